"""The avoid-list: one mechanism (shared/avoid.py) shared by curation and generation. Patterns
curation flagged are named in the teacher's system prompt of the top-up rounds, never the first."""

from scripted_generator import make_spec, make_traits, scripted_llm
from test_generate_chats import curiosity_junk_first_round

from traitforge.pipeline import Run
from traitforge.shared.avoid import avoid_list, read_found, write_found
from traitforge.generate.chats import run_chats
from traitforge.jsonl import read_jsonl
from traitforge.runstore import RunStore
from traitforge.types import Chat


def test_render_avoid_names_each_pattern_once_and_nothing_for_none():
    text = avoid_list(["opens by praising the question", "opens by praising the question", " ", "ends with a question"])
    assert text.count("opens by praising") == 1 and text.splitlines()[1:] == [
        "- opens by praising the question", "- ends with a question"]
    assert avoid_list([]) == ""


def test_top_up_rounds_name_the_flagged_patterns_to_avoid(tmp_path):
    spec = make_spec(tmp_path, chats={"topup_rounds": 2})
    store = RunStore(spec.output_path)
    write_found(store.root, ["compares every task to a marathon"])
    assert read_found(store.root) == ["compares every task to a marathon"]
    run_chats(Run.of(store, spec, make_traits(), generator=scripted_llm(curiosity_junk_first_round)), spec.generation)
    chats = read_jsonl(store.root / "generated" / "chats.jsonl", Chat)
    topup = [c for c in chats if "marathon" in c.system_prompt]
    first = [c for c in chats if "marathon" not in c.system_prompt]
    assert len(topup) == 2 and {c.trait_ids[0] for c in topup} == {"curiosity"}
    assert len(first) == 2 and "Avoid these patterns" in topup[0].system_prompt


def test_a_rerun_of_finished_rounds_leaves_every_generated_file_as_it_was(tmp_path):
    """Re-entering the first round's finished steps must not move their rows behind the top-up
    rounds' (that reshuffled the files, and curation and training redid their work on resume)."""
    spec = make_spec(tmp_path, chats={"topup_rounds": 2})
    store = RunStore(spec.output_path)
    run_chats(Run.of(store, spec, make_traits(), generator=scripted_llm(curiosity_junk_first_round)), spec.generation)
    # units_done.jsonl is the steps' append-only bookkeeping, not data
    data = lambda: {f.name: f.read_bytes() for f in sorted((store.root / "generated").glob("*.jsonl"))  # noqa: E731
                    if f.name != "units_done.jsonl"}
    before = data()
    assert any(b"topup" in v for v in before.values())  # the top-up rounds did run
    run_chats(Run.of(store, spec, make_traits(), generator=scripted_llm(curiosity_junk_first_round)), spec.generation)
    assert data() == before
