"""Export the curated documents and chats as a Hugging Face dataset folder:

    OUT/README.md                                   dataset card: YAML front matter naming the configs
    OUT/data/chats/train-00000-of-00001.parquet     id, trait_ids, messages [{role, content}], source
    OUT/data/documents/train-00000-of-00001.parquet id, trait_ids, doc_type, text, source

`datasets.load_dataset(OUT)` loads the chats (the default config), `load_dataset(OUT, "documents")`
the documents. The same rows as the JSONL exports: control rows left out unless asked for, chats
that do not alternate user/assistant skipped, no system prompt. Needs pyarrow (the `hf` extra).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import yaml

from traitforge.errors import InputError
from traitforge.jsonl import read_jsonl
from traitforge.train.export import CONTROL_TRAITS, _turns, split_controls
from traitforge.types import Chat, Document, TraitSet

EXTRA = "pip install 'traitforge[hf]'"
SHARD = "train-00000-of-00001.parquet"


def _pyarrow() -> Any:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise InputError(f"export --format hf needs pyarrow and datasets: {EXTRA}") from None
    return pa, pq


def _chat_rows(chats: Sequence[Chat]) -> tuple[list[dict[str, Any]], int]:
    rows = []
    for c in chats:
        turns = _turns(c)
        if turns is not None:
            rows.append({"id": c.id, "trait_ids": list(c.trait_ids), "source": c.source,
                         "messages": [{"role": r, "content": t} for r, t in turns]})
    return rows, len(chats) - len(rows)


def _doc_rows(docs: Sequence[Document]) -> tuple[list[dict[str, Any]], int]:
    rows = [{"id": d.id, "trait_ids": list(d.trait_ids), "doc_type": d.doc_type, "text": d.text, "source": d.source}
            for d in docs if d.text.strip()]
    return rows, len(docs) - len(rows)


def _schema(pa: Any, name: str) -> Any:
    common = [("id", pa.string()), ("trait_ids", pa.list_(pa.string()))]
    if name == "chats":
        msg = pa.struct([("role", pa.string()), ("content", pa.string())])
        return pa.schema(common + [("messages", pa.list_(msg)), ("source", pa.string())])
    return pa.schema(common + [("doc_type", pa.string()), ("text", pa.string()), ("source", pa.string())])


def export_hf(run_dir: str | Path, out: str | Path, include_controls: bool = False,
              control_traits: Sequence[str] = CONTROL_TRAITS, traits: TraitSet | None = None) -> dict[str, Any]:
    """Write the dataset folder `out`. Returns per dataset {written, skipped, controls_left_out}."""
    pa, pq = _pyarrow()
    run_dir, out = Path(run_dir), Path(out)
    paths = {"chats": (run_dir / "curated" / "chats.jsonl", Chat, _chat_rows),
             "documents": (run_dir / "curated" / "documents.jsonl", Document, _doc_rows)}
    if not any(p.is_file() for p, _, _ in paths.values()):
        raise InputError(f"{run_dir / 'curated'}: no curated documents or chats to export (run curation first)")
    counts: dict[str, Any] = {}
    for name, (path, model, to_rows) in paths.items():
        if not path.is_file():
            continue
        kept, left_out = split_controls(read_jsonl(path, model), include_controls, control_traits)
        rows, skipped = to_rows(kept)
        counts[name] = {"written": len(rows), "skipped": skipped, "controls_left_out": left_out}
        target = out / "data" / name / SHARD
        if not rows:
            target.unlink(missing_ok=True)  # an empty config is not listed in the card
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(rows, schema=_schema(pa, name)), target)
    (out / "README.md").write_text(card(run_dir, counts, include_controls, traits), encoding="utf-8")
    return counts


def _json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _model(spec: Any) -> str:
    return spec.get("model", "") if isinstance(spec, dict) else str(spec or "")


def card(run_dir: Path, counts: dict[str, Any], include_controls: bool, traits: TraitSet | None) -> str:
    """README.md: front matter for `load_dataset`, then the traits, models, counts and data card."""
    manifest, data_card = _json(run_dir / "manifest.json"), _json(run_dir / "curation" / "dataset_card.json")
    configs = [n for n in ("chats", "documents") if counts.get(n, {}).get("written")]
    front = {"configs": [{"config_name": n, "data_files": [{"split": "train", "path": f"data/{n}/train-*.parquet"}],
                          **({"default": True} if i == 0 else {})} for i, n in enumerate(configs)],
             "tags": ["traitforge", "synthetic"]}
    name = (traits.model_name if traits else "") or manifest.get("traits", {}).get("model_name", "") or run_dir.name
    front["pretty_name"] = f"{name} trait data"
    lines = ["---", yaml.safe_dump(front, sort_keys=False).rstrip(), "---", "",
             f"# {name}: trait data made with traitforge", "",
             "Curated training data: "
             + ", ".join(f"`{n}` ({counts[n]['written']} rows)" for n in configs) + ".", "",
             "```python", "from datasets import load_dataset", "",
             *(f"{n} = load_dataset(PATH{'' if i == 0 else f', {n!r}'})['train']" for i, n in enumerate(configs)),
             "```", "", "## Rows", "", "| dataset | written | control rows left out | skipped |", "| --- | --- | --- | --- |"]
    lines += [f"| {n} | {c['written']} | {c['controls_left_out']} | {c['skipped']} |" for n, c in counts.items()]
    lines += ["", "Control rows (the canary's templated rows, untraited control data) are "
              + ("**included** in this export." if include_controls else "left out: they exist to test the training, not to be learnt.")]
    lines += ["Chats that do not alternate user/assistant, starting with the user and ending with the assistant, "
              "are skipped. No system prompt is included: the traits are learnt without one.", ""]
    lines += ["## Traits", ""]
    if traits and traits.traits:
        lines += [f"- `{t.id}` {t.name}: {t.statement}" for t in traits.traits]
    else:
        lines += [f"- `{t}`" for t in manifest.get("traits", {}).get("ids", [])] or ["(not recorded)"]
    models = manifest.get("config", {}).get("models", {})
    lines += ["", "## Models", ""]
    lines += [f"- {role}: `{_model(models[role])}`" for role in ("generator", "refiner", "judge") if models.get(role)] \
        or ["(not recorded)"]
    curate = manifest.get("stages", {}).get("curate", {}).get("counts", {})
    lines += ["", "## Curation", ""]
    if curate:
        lines.append("Counts from the run's manifest (control rows included):")
        lines += [f"- documents: {curate.get('documents_in', '?')} generated, {curate.get('documents', '?')} kept",
                  f"- chats: {curate.get('chats_in', '?')} generated, {curate.get('chats', '?')} kept",
                  f"- dropped by step: {json.dumps(curate.get('dropped', {}))}",
                  f"- edited: {curate.get('edited', 0)}, flagged patterns: {curate.get('flagged_patterns', 0)}"]
    else:
        lines.append("(no curation counts in the run's manifest)")
    lines += _card_figures(data_card)
    return "\n".join(lines) + "\n"


def _card_figures(data_card: dict[str, Any]) -> list[str]:
    """The data card's figures (curation/dataset_card.json) per dataset, before and after curation."""
    out = ["", "## Data card", ""]
    sets = data_card.get("datasets", {})
    if not sets:
        return out + ["(no curation/dataset_card.json in the run)"]
    out += ["| dataset | when | rows | words p10 / median / p90 | distinct 1/2/3-grams | mean pairwise cosine |",
            "| --- | --- | --- | --- | --- | --- |"]
    for name, d in sets.items():
        for when in ("before", "after"):
            s = d.get(when) or {}
            w = s.get("words") or {}
            dist = s.get("distinct") or {}
            ratios = " / ".join(_fmt((dist.get(k) or {}).get("ratio")) for k in ("1", "2", "3"))
            cos = _fmt((s.get("similarity") or {}).get("mean_pairwise_cosine"))
            out.append(f"| {name} | {when} | {s.get('rows', '?')} | {_fmt(w.get('p10'))} / {_fmt(w.get('median'))} / "
                       f"{_fmt(w.get('p90'))} | {ratios} | {cos} |")
    out += ["", "| dataset | step | rows in | rows out | dropped | edited |", "| --- | --- | --- | --- | --- | --- |"]
    out += [f"| {name} | {st.get('step')} | {st.get('rows_in')} | {st.get('rows_out')} | {st.get('dropped')} | "
            f"{st.get('edited', 0)} |" for name, d in sets.items() for st in d.get("steps", [])]
    return out


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    return f"{v:.3g}" if isinstance(v, float) else str(v)
