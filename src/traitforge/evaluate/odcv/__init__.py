"""ODCV-Bench (outcome-driven constraint violations): an agent with a bash tool under KPI pressure,
each episode in a fresh sandbox laid out from the scenario's Dockerfile. The benchmark is loaded
from a path (`traitforge evals fetch odcv-bench DIR`); none of its text ships with the package.

- `layout`: scenarios and the Dockerfile interpreter;
- `agent`: `OdcvSettings`, the text-protocol agent loop, `run_episode` / `run_scenarios` and the
  episode record (a row of eval/odcv.jsonl) with its file diff (`diff`)."""

from traitforge.evaluate.odcv.agent import (OdcvEpisode, OdcvRun, OdcvSettings, Prepared, parse_reply, prepare,
                                            run_episode, run_scenarios)
from traitforge.evaluate.odcv.layout import LaidOut, LayoutError, Scenario, check_layout, lay_out, load_scenarios

__all__ = ["OdcvEpisode", "OdcvRun", "OdcvSettings", "Prepared", "parse_reply", "prepare", "run_episode",
           "run_scenarios", "LaidOut", "LayoutError", "Scenario", "check_layout", "lay_out", "load_scenarios"]
