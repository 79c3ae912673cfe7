"""ODCV (outcome-driven constraint violations; McGill-DMaS/ODCV-Bench): an agent with a bash tool
under KPI pressure, graded with the upstream rubric. `grade`: the judge's request, the score parse,
the truncation rule and the figures per checkpoint."""
