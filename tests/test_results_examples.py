"""results.json's `examples` (the report's side-by-side answers and transcripts) do not depend on
the order in which rows were finished: two runs with equal figures gave different examples when the
#28 tiny runs were diffed, because rows lie in the eval files in completion order."""

from __future__ import annotations

import random

from traitforge.evaluate.common import ItemResult
from traitforge.evaluate.results import _examples
from traitforge.runstore import RunStore


def _rows() -> list[ItemResult]:
    rows = []
    for ck in ("base", "sft", "control", "midtrain"):
        for item in ("b1", "b2"):
            rows.append(ItemResult(id=f"behaviour:{ck}:{item}", eval="behaviour", checkpoint=ck, item_id=item,
                                   trait_id="t", value=0.5, detail={"prompt": item, "response": f"{ck} on {item}"}))
        for item in ("m1", "m2", "m3"):
            rows.append(ItemResult(id=f"multiturn:{ck}:{item}", eval="multiturn", checkpoint=ck, item_id=item,
                                   trait_id="t", value=1.0 if item != "m2" else 0.0,
                                   detail={"tactic": item, "messages": [{"role": "user", "content": item}]}))
    return rows


def test_examples_are_the_same_whatever_order_the_rows_were_finished_in(tmp_path):
    store = RunStore(tmp_path / "run")
    rows = _rows()
    first = _examples(store, rows, {})
    for seed in range(5):
        shuffled = list(rows)
        random.Random(seed).shuffle(shuffled)
        assert _examples(store, shuffled, {}) == first
    assert [r["checkpoint"] for r in first["behaviour"][0]["responses"]] == ["base", "control", "midtrain", "sft"]
    assert [t["tactic"] for t in first["transcripts"]] == ["m2"] * 4  # the violated one first, per checkpoint
