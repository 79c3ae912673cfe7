"""The out-of-distribution evals' sections (results.json["ood"])."""

from __future__ import annotations

from typing import Any

from traitforge.report.cells import esc, estimate_cell, example, messages, say, table


def agentic_misalignment(s: dict[str, Any]) -> str:
    by = s.get("by_checkpoint", {})
    scenarios = sorted({sc for v in by.values() for sc in v.get("by_scenario", {})})
    rows = [(ck, [estimate_cell(v.get("harmful")), estimate_cell(v.get("action_taken"))]
             + [estimate_cell(v.get("by_scenario", {}).get(sc)) for sc in scenarios]) for ck, v in by.items()]
    out = ("<h2>Agentic misalignment</h2><p>Email-agent scenarios (loaded from the user's directory): share of replies "
           "with a harmful action, i.e. the act was really taken through the tool (checked in code) and the judge "
           f"calls it harmful. {len(s.get('conditions', []))} conditions. Lower is better.</p>"
           + table(["checkpoint", "harmful", "act taken (no judge)"] + [f"harmful: {sc}" for sc in scenarios], rows))
    conds = s.get("conditions", [])
    crow = [(c, [estimate_cell(by[ck].get("by_condition", {}).get(c)) for ck in by]) for c in conds]
    out += (f"<details><summary>Per condition ({len(conds)})</summary>"
            + table(["condition"] + list(by), crow) + "</details>")
    for ex in s.get("examples", []):
        tag = "bad" if ex.get("harmful") == 1.0 else "good" if ex.get("harmful") == 0.0 else ""
        verdict = "harmful" if tag == "bad" else "not harmful" if tag else "unscored"
        out += example(f'{esc(ex.get("checkpoint"))} · {esc(ex.get("condition"))}<span class="tag {tag}">{verdict}</span>',
                       say("agent", ex.get("response")))
    return out


def _grade_tags(msgs: list[dict[str, Any]], grades: list[dict[str, Any]]) -> str:
    by_turn = {g["turn"]: g for g in grades}
    out, turn = [], 0
    for m in msgs:
        role = "user" if m.get("role") == "user" else "assistant"
        tag = ""
        if role == "user":
            turn += 1
        elif turn in by_turn:
            g = by_turn[turn]
            rating = "" if g.get("rating") is None else f" {g['rating']:g}"
            tag = (f'<span class="tag bad">validates{rating}</span>' if g.get("validates") is True else
                   f'<span class="tag good">does not validate{rating}</span>' if g.get("validates") is False else
                   '<span class="tag">ungraded</span>')
        out.append(f'<div class="msg {role}"><b>{esc(role)}</b>{tag}\n{esc(m.get("content"))}</div>')
    return "".join(out)


def delusion(s: dict[str, Any]) -> str:
    by = s.get("by_checkpoint", {})
    keys = [k for k in s.get("keys", []) if any(k in v.get("keys", {}) for v in by.values())]
    rows = []
    for ck, v in by.items():
        cells = [estimate_cell(v.get("validated")), estimate_cell(v.get("first_validation"), "mean")]
        for k in keys:
            e = v.get("keys", {}).get(k)
            cells.append(estimate_cell(e, "proportion" if (e or {}).get("kind") == "yes_rate" else "mean"))
        rows.append((ck, cells))
    out = ("<h2>Delusion validation</h2><p>Simulated users whose delusions escalate turn by turn (personas from the "
           f"user's directory), every reply graded on the rubric. Validated: some turn scored "
           f"{esc(s.get('validate_key'))} ≥ {esc(s.get('validate_at'))} (lower is better); first validation: the turn "
           "it first happened; rubric keys: mean per conversation, or share of turns answered Yes.</p>"
           + table(["checkpoint", "validated", "first validation (turn)"] + keys, rows))
    for t in s.get("transcripts", []):
        fv = t.get("first_validation")
        when = "validated first at turn " + esc(fv) if fv else "never validated"
        out += example(f'{esc(t.get("checkpoint"))} · {esc(t.get("name"))} ({esc(t.get("persona"))}) · {when}',
                       _grade_tags(t.get("messages", []), t.get("grades", [])))
    return out


def audits(s: dict[str, Any]) -> str:
    by = s.get("by_checkpoint", {})
    rows = [(ck, [estimate_cell(v.get("violation")), estimate_cell(v.get("first_violation"), "mean"),
                  estimate_cell(v.get("consistency"))]) for ck, v in by.items()]
    out = ("<h2>Repeated audits</h2><p>Several auditor rollouts of each seed scenario (written per trait, plus the "
           f"user's seed files; {len(s.get('seeds', {}))} seeds). Violation: the trait broke at some turn (lower is "
           "better); consistency: share of a seed's rollout pairs that agree, averaged over seeds.</p>"
           + table(["checkpoint", "violation rate", "first violation (turn)", "consistency"], rows))
    for t in s.get("transcripts", []):
        fv = t.get("first_violation")
        when = "first violation at turn " + esc(fv) if fv else "no violation found"
        out += example(f'{esc(t.get("checkpoint"))} · {esc(t.get("trait_id"))} · {esc(t.get("seed_id"))} '
                       f'rollout {esc(t.get("rollout"))} · {when}', messages(t.get("messages", []), t.get("verdicts")))
    return out


def agentic_traits(s: dict[str, Any]) -> str:
    by = s.get("by_checkpoint", {})
    rows = [(ck, [estimate_cell(v.get("pass")), estimate_cell(v.get("score"), "mean"),
                  estimate_cell(v.get("emails_sent"), "mean")]) for ck, v in by.items()]
    out = ("<h2>Trait behaviour in agentic form</h2><p>The model acts as an email agent in a scenario where the trait "
           "matters; the judge grades its actions with the behaviour rubric.</p>"
           + table(["checkpoint", "pass rate", "score (1-10)", "emails sent"], rows))
    built = s.get("items_built") or {}
    if set(built) - {"written"}:  # a weak item writer's inboxes were repaired or put in a fixed frame
        out += ("<p>Inboxes: " + ", ".join(f"{n} {esc(k)}" for k, n in sorted(built.items()))
                + " (templated: the item writer's plain email in a fixed frame; read these scores with care).</p>")
    for ex in s.get("examples", []):
        out += example(f'{esc(ex.get("checkpoint"))} · {esc(ex.get("trait_id"))}',
                       say("inbox", ex.get("inbox"), "user") + say("agent", ex.get("response")))
    return out
