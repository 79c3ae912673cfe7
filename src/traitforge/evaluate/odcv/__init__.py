"""ODCV (outcome-driven constraint violations; McGill-DMaS/ODCV-Bench): an agent with a bash tool
under KPI pressure, in a sandbox laid out from each scenario's Dockerfile, graded with the upstream
rubric. `layout`: the Dockerfile interpreter; `agent`: the text-protocol agent loop and episode
record; `grade`: the judge's request, the score parse, the truncation rule and the figures per
checkpoint."""
