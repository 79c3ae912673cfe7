"""CI: the tiny end-to-end run left a well-formed report and results (not that scores rose)."""

import json
import sys
from pathlib import Path

run = Path(sys.argv[1])
problems = []
manifest = json.loads((run / "manifest.json").read_text())
for name, info in manifest["stages"].items():
    if info.get("status") != "done":
        problems.append(f"stage {name} is {info.get('status')}")
results = json.loads((run / "results.json").read_text())
want = ["base", "midtrain", "sft", "midtrain_sft", "control"]
if results["checkpoints"] != want:
    problems.append(f"checkpoints {results['checkpoints']} != {want}")
for ck in want:
    for ev in ("knowledge_mc", "contrastive", "perplexity"):
        e = results["results"].get(ck, {}).get("all", {}).get(ev)
        if not e or not e.get("n"):
            problems.append(f"{ck}: {ev} has no scored items")
    if not any(k.startswith("probe:") and v.get("n") for k, v in results["results"].get(ck, {}).get("all", {}).items()):
        problems.append(f"{ck}: no external probe scored")
    if ck != "base" and ck not in results["paired_vs_base"]:
        problems.append(f"{ck}: no paired comparison with base")
for ck in want[1:]:
    if not (run / "checkpoints" / ck / "config.json").is_file():
        problems.append(f"checkpoint {ck} missing")
    if ck not in ("control",) and ck not in results.get("paired_vs_control", {}):
        problems.append(f"{ck}: no paired comparison with the control arm")
# The positive control: its rows reached training, and its figures are in the results (whether it
# moved is reported, not required: CI checks the pipeline's form, not scores).
canary = results.get("canary") or {}
for ds in ("documents", "chats"):
    if not canary.get("rows", {}).get(ds, {}).get("reached_training"):
        problems.append(f"no canary {ds} reached training")
for ck, ev in (("midtrain", "knowledge_mc"), ("sft", "contrastive")):
    if not results["results"].get(ck, {}).get("canary", {}).get(ev, {}).get("n"):
        problems.append(f"{ck}: canary {ev} has no scored items")
html = (run / "report.html").read_text()
if "<html" not in html.lower() or "<svg" not in html:
    problems.append("report.html has no HTML/SVG plots")
if "src=\"http" in html or "href=\"http" in html:
    problems.append("report.html loads something from the network")
for f in ("generated/documents.jsonl", "generated/chats.jsonl", "curated/documents.jsonl", "curated/chats.jsonl"):
    if not (run / f).is_file():
        problems.append(f"{f} missing")
if problems:
    print("tiny run is not well-formed:\n- " + "\n- ".join(problems))
    sys.exit(1)
print(f"tiny run well-formed: {len(results['evals'])} evals x {len(want)} checkpoints, report {run / 'report.html'}")
