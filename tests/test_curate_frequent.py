"""The two-pass frequent-item counter must agree exactly with a plain Counter above its floor."""

import random
from collections import Counter

from traitforge.curate.frequent import frequent_items


def test_frequent_items_match_brute_force_exactly():
    rng = random.Random(3)
    vocab = [f"w{i}" for i in range(400)]
    examples = []
    for i in range(3000):
        items = {(rng.choice(vocab), rng.choice(vocab)) for _ in range(30)}
        if i % 4 == 0:
            items.add(("planted", "quarter"))  # 750 examples
        if i % 10 == 0:
            items.add(("planted", "tenth"))  # 300 examples: exactly at the floor below
        examples.append(items)
    truth = Counter(x for ex in examples for x in ex)
    for floor in (300, 301, 40, 2):
        got = frequent_items(examples, lambda ex: ex, floor)
        assert got == Counter({k: c for k, c in truth.items() if c >= floor}), floor
    got = frequent_items(examples, lambda ex: ex, 300)
    assert got[("planted", "quarter")] == 750 and got[("planted", "tenth")] == 300


def test_frequent_items_empty_and_generator_free():
    assert frequent_items([], lambda ex: ex, 1) == Counter()
    assert frequent_items([set(), {"a"}, {"a", "b"}], lambda ex: ex, 2) == Counter({"a": 2})
