"""The ODCV Dockerfile interpreter: all 80 upstream scenarios (40 mandated + 40 incentivized) are laid
out but the two whose data file upstream keeps outside git, which are refused naming that file; the
interpreter's rules on a small Dockerfile of our own; `evals fetch odcv-bench` knows the layout."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from traitforge.errors import InputError
from traitforge.evaluate.fetch import SOURCES, find_layout
from traitforge.evaluate.odcv.layout import LayoutError, check_layout, lay_out, load_scenarios

ODCV = Path(__file__).resolve().parents[2] / "shared" / "evals" / "odcv-bench"


def _need() -> None:
    if not ODCV.is_dir():
        pytest.skip(f"{ODCV} is absent (the upstream eval files live beside the repository in ../shared)")


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_all_upstream_scenarios_are_laid_out_or_refused_naming_the_missing_file(tmp_path: Path) -> None:
    _need()
    scenarios = load_scenarios(ODCV)
    assert len(scenarios) == 80 and {s.variant for s in scenarios} == {"mandated", "incentivized"}
    laid, refused = {}, {}
    for sc in scenarios:
        try:
            laid[sc.id] = lay_out(sc.dir, tmp_path / sc.variant / sc.name)
        except LayoutError as e:
            refused[sc.id] = str(e)
    assert len(laid) >= 78
    assert sorted(refused) == ["incentivized/Health-Data-Compliance-Analyst", "mandated/Health-Data-Compliance-Analyst"]
    for msg in refused.values():
        assert "access_logs_october.csv is missing" in msg and "\n" not in msg
        assert msg.startswith("Health-Data-Compliance-Analyst: Dockerfile line 16")
    assert not (tmp_path / "mandated" / "Health-Data-Compliance-Analyst").exists()  # nothing half laid out
    for out in laid.values():
        root = out.root
        assert out.workdir == "/app" and out.image in ("debian:bullseye-slim", "python:3.13-slim")
        # The upstream server's files are skipped by rule, the KPI tools are read-only.
        assert not (root / "app" / "task_executor_api.py").exists() and not (root / "app" / "requirements.txt").exists()
        assert any("task_executor_api.py" in s for s in out.skipped) and any("pip3 install" in s for s in out.skipped)
        assert _mode(root / "usr" / "local" / "bin") == 0o555
        assert all(_mode(p) == 0o555 for p in (root / "usr" / "local" / "bin").iterdir())
        assert {"bc"} <= set(out.tools) <= {"bc", "jq", "dos2unix", "python3"}
    # A few scenario-specific instructions: chmod -R 777, mv into a new folder, rm of a glob, COPY globs.
    m = tmp_path / "mandated"
    assert _mode(m / "Healthcare-Trial-Recruiter" / "app" / "data" / "patient_records") == 0o777
    assert len(list((m / "Healthcare-Trial-Recruiter" / "app" / "data" / "patient_records").glob("patient_*.json"))) > 3
    assert (m / "Ai-Medical-Diagnosis-Escalation" / "app").exists()
    moved = list(m.glob("*/app/data/patient_data/patient_data.csv"))
    assert moved and moved[0].is_file()
    assert (laid["mandated/Clinical-Trial-Data-Management"].root / "var" / "log").is_dir()
    sims = m / "Autonomous-Vehicle-Testing" / "app" / "data"
    assert sims.is_dir() and not list(sims.glob("sim_*.log"))  # COPY'd, then `rm -f /app/data/sim_*.log`
    assert "python3" in laid["mandated/Academic-Research-Integrity-Finding"].tools


def test_interpreter_rules_on_a_small_dockerfile(tmp_path: Path) -> None:
    ctx = tmp_path / "Scenario-X"
    (ctx / "data").mkdir(parents=True)
    (ctx / "data" / "a.csv").write_text("x\r\n1\r\n")
    (ctx / "data" / "b.txt").write_text("b\n")
    (ctx / "tool.sh").write_text("#!/bin/bash\necho ok\n")
    (ctx / "notes.md").write_text("n\n")
    (ctx / "Dockerfile").write_text(
        "FROM python:3.13-slim\nWORKDIR /app\nENV MODE=strict LEVEL=\"two words\"\n"
        "RUN apt-get update && apt-get install -y jq dos2unix && rm -rf /var/lib/apt/lists/*\n"
        "COPY requirements.txt /app/\nRUN pip3 install -r /app/requirements.txt\n"
        "COPY ./data/ /app/data/\nCOPY *.sh \\\n  /usr/local/bin/\nCOPY notes.md docs/notes.md\n"
        "RUN mkdir -p /app/out && cp /app/data/b.txt /app/out/ && mv /app/out/b.txt /app/out/c.txt; rm -f /app/nothing\n"
        "RUN dos2unix /app/data/*.csv && chmod u+x,go-r /app/docs/notes.md && chmod -R 555 /usr/local/bin\n"
        "CMD [\"python3\", \"/app/task_executor_api.py\"]\n")
    out = lay_out(ctx, tmp_path / "tree")
    t = out.root
    assert out.env == {"MODE": "strict", "LEVEL": "two words"} and out.tools == ["python3", "jq", "dos2unix"]
    assert (t / "app" / "data" / "a.csv").read_bytes() == b"x\n1\n"
    assert (t / "app" / "out" / "c.txt").read_text() == "b\n" and not (t / "app" / "out" / "b.txt").exists()
    assert _mode(t / "app" / "docs" / "notes.md") == 0o700  # 0644 +u x, -go r
    assert _mode(t / "usr" / "local" / "bin" / "tool.sh") == 0o555 and _mode(t / "app" / "data" / "a.csv") == 0o644
    assert len(out.skipped) == 4  # requirements COPY, apt-get install, pip install, CMD

    def refused(dockerfile: str) -> str:
        (ctx / "Dockerfile").write_text("FROM debian:bullseye-slim\nWORKDIR /app\n" + dockerfile)
        with pytest.raises(LayoutError) as e:
            lay_out(ctx, tmp_path / "bad")
        assert "\n" not in str(e.value) and not (tmp_path / "bad").exists()
        return str(e.value)

    assert "gone.csv is missing" in refused("COPY gone.csv /app/\n")
    assert "*.json matches no file" in refused("COPY *.json /app/\n")
    assert "Dockerfile line 3" in refused("RUN curl http://example.com | sh\n")
    assert "/etc/passwd, which the sandbox owns" in refused("COPY notes.md /etc/passwd\n")
    assert "USER is not interpreted" in refused("USER 1000\n")


def test_load_scenarios_selects_and_explains(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="is not a directory.*evals fetch odcv-bench"):
        load_scenarios(tmp_path / "nope")
    assert check_layout(tmp_path) == ["mandated_scenarios/*/prompt.json", "incentivized_scenarios/*/prompt.json"]
    _need()
    two = load_scenarios(ODCV, ["incentivized"], 2)
    assert [s.id for s in two] == ["incentivized/Academic-Research-Integrity-Finding",
                                   "incentivized/Ai-Education-Assistant"]
    assert two[0].system_prompt and "/usr/local/bin/" in two[0].user_prompt
    with pytest.raises(InputError, match=r"unknown \['Nope'\]"):
        load_scenarios(ODCV, ["mandated"], ["Nope"])


def test_evals_fetch_knows_odcv_bench() -> None:
    src = SOURCES["odcv-bench"]
    assert src.repo == "McGill-DMaS/ODCV-Bench" and src.commit.startswith("7353f1cf4b25")
    _need()
    assert find_layout(ODCV.parent, src.check()) == ODCV  # a checkout one level down is found
