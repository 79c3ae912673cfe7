"""The generation stage's entry point (`traitforge.generate.run_generation`): documents and chats, the
generic mix, then the controls' data."""

from __future__ import annotations

from typing import TYPE_CHECKING

from traitforge.generate.settings import GenerationSpec

if TYPE_CHECKING:
    from traitforge.config import ControlsSpec
    from traitforge.runcontext import Run


def run_generation(run: "Run", cfg: GenerationSpec, controls: ControlsSpec, what: str = "all") -> None:
    """The generation stage: documents and chats (what="documents"/"chats": one of them), the generic
    mix, then the controls' data (the controls section: the data generation writes for them).
    The spec's `inputs:` replace a kind's generation or join it (generate/imported.py); the control
    arm then answers the imported chats' prompts too."""
    from traitforge.generate.chats import ChatsRun
    from traitforge.generate.documents import DocumentsRun
    from traitforge.generate.imported import import_inputs, replaces, strip_imported
    from traitforge.llm.client import gather_or_cancel

    inputs = cfg.inputs
    with run.stage("generate") as st:
        strip_imported(run, inputs, what)
        generator, refiner = run.llm("generator"), run.llm("refiner")
        # Documents and chats at once: their steps do not depend on each other, and on a local model
        # their calls then share the device's batches (each pipeline counts its own usage on a fork).
        jobs = []
        if what in ("all", "documents") and not replaces(inputs, "documents"):
            jobs.append(DocumentsRun(run, cfg, generator.fork()).run())
        if what in ("all", "chats") and not replaces(inputs, "chats"):
            chats_llm = generator.fork()
            jobs.append(ChatsRun(run, cfg, chats_llm,
                                 refiner=chats_llm if refiner is generator else refiner.fork()).run())
        st.run(gather_or_cancel(jobs))
        import_inputs(run, inputs, what, cfg, st.run)
        if what in ("all", "chats") and cfg.generic_prompts:
            from traitforge.generate.generic import generic

            st.run(generic(run, cfg, run.llm("generator")))
        if what == "all":
            run_controls(run, cfg, controls)


def run_controls(run: "Run", cfg: GenerationSpec, controls: ControlsSpec) -> None:
    """The controls' data: the canary's templated rows, and the control arm's untraited answers to
    the chats' prompts (docs/controls.md)."""
    from traitforge.generate.canary import run_canary
    from traitforge.generate.untraited import untraited

    with run.stage("generate") as st:
        if controls.canary:
            run_canary(run, controls)
        if cfg.control_arm:
            st.run(untraited(run, cfg, run.llm("generator")))
