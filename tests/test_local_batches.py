"""How the local backend cuts queued rows into batches (`plan_batches`): by what each batch costs."""

from __future__ import annotations

import itertools
import random

from traitforge.llm.providers.local_hf import CPU_COSTS, GPU_COSTS, plan_batches


def _cost(plan: list[list[int]], prompts: list[int], limits: list[int]) -> float:
    return sum(CPU_COSTS.of(len(b), max(prompts[r] for r in b), max(limits[r] for r in b)) for b in plan)


def test_rows_alike_share_one_batch() -> None:
    plan = plan_batches([100, 104, 98, 120] * 4, [64] * 16, 32)
    assert len(plan) == 1 and sorted(plan[0]) == list(range(16))


def test_a_long_prompt_or_a_long_answer_does_not_hold_the_others() -> None:
    # Seen in run.log: judge prompts of 29 to 2,657 tokens in one batch padded 10,628 tokens for 5,204 real.
    assert plan_batches([29, 400, 800, 2657], [64] * 4, 32) == [[0, 1, 2], [3]]
    # One 600-token answer among 32-token ones: the others would decode 600 steps.
    plan = plan_batches([117, 300, 310, 320, 330], [32, 32, 600, 32, 32], 32)
    assert [2] in plan and sorted(r for b in plan for r in b) == [0, 1, 2, 3, 4]
    # On a GPU padding and rows cost little beside a step: the batch stays whole.
    assert plan_batches([29, 400, 800, 2657], [64] * 4, 32, GPU_COSTS) == [[0, 1, 2, 3]]


def test_every_row_once_and_no_batch_over_the_size() -> None:
    rng = random.Random(0)
    for _ in range(20):
        n = rng.randint(1, 80)
        prompts = [rng.randint(5, 3000) for _ in range(n)]
        limits = [rng.choice([16, 64, 96, 600]) for _ in range(n)]
        plan = plan_batches(prompts, limits, 8)
        assert sorted(r for b in plan for r in b) == list(range(n))
        assert all(1 <= len(b) <= 8 for b in plan)


def test_the_cut_is_the_cheapest_of_its_orders() -> None:
    rng = random.Random(1)
    for _ in range(10):
        n = 7
        prompts = [rng.randint(10, 2500) for _ in range(n)]
        limits = [rng.choice([32, 64, 600]) for _ in range(n)]
        best = float("inf")
        for order in (sorted(range(n), key=lambda r: prompts[r]),
                      sorted(range(n), key=lambda r: (limits[r], prompts[r]))):
            for cuts in itertools.product([False, True], repeat=n - 1):  # every contiguous cut, by brute force
                plan, start = [], 0
                for k, c in enumerate(cuts, 1):
                    if c:
                        plan.append(order[start:k])
                        start = k
                plan.append(order[start:])
                if all(len(b) <= 4 for b in plan):
                    best = min(best, _cost(plan, prompts, limits))
        got = plan_batches(prompts, limits, 4)
        assert abs(_cost(got, prompts, limits) - best) < 1e-9
