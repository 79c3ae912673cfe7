"""`traitforge evals fetch NAME DIR`: a GitHub-style archive served over real HTTP on 127.0.0.1 is
unpacked and its layout checked; offline is one clear line; a directory already in the layout is
used as it is."""

from __future__ import annotations

import functools
import http.server
import shutil
import subprocess
import sys
import tarfile
import threading
from pathlib import Path

import pytest

from traitforge.errors import InputError
from traitforge.evaluate.delusion import load_delusion_set
from traitforge.evaluate.fetch import fetch_eval

PSY = Path(__file__).resolve().parents[2] / "shared" / "evals" / "ai-psychosis"


def _need() -> None:
    if not PSY.is_dir():
        pytest.skip(f"{PSY} is absent (the upstream eval files live beside the repository in ../shared)")


@pytest.fixture()
def served(tmp_path: Path):
    """An HTTP server on 127.0.0.1 serving tmp_path/www; yields its base URL."""
    www = tmp_path / "www"
    www.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(www))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield www, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _archive(src: Path, out: Path, top: str = "ai-psychosis-b6593b3") -> None:
    with tarfile.open(out, "w:gz") as tar:
        tar.add(src, arcname=top)


def test_fetch_unpacks_and_checks_the_layout(tmp_path: Path, served) -> None:
    _need()
    www, base = served
    _archive(PSY, www / "psy.tar.gz")
    dest = tmp_path / "evals" / "ai-psychosis"
    root = fetch_eval("ai-psychosis", dest, url=f"{base}/psy.tar.gz", timeout=10)
    assert root == dest and (dest / "FETCHED.json").is_file()
    assert len(load_delusion_set(root).personas) == 9
    # Already there: used as it is, nothing downloaded (the URL is dead now).
    assert fetch_eval("ai-psychosis", dest, url=f"{base}/gone.tar.gz") == dest


def test_fetch_errors_are_one_line(tmp_path: Path, served) -> None:
    www, base = served
    junk = tmp_path / "junk"
    (junk / "docs").mkdir(parents=True)
    (junk / "docs" / "README.md").write_text("not an eval\n")
    _archive(junk, www / "junk.tar.gz", top="junk-123")
    with pytest.raises(InputError, match=r"does not have the expected layout after download: missing red_team_prompt"):
        fetch_eval("ai-psychosis", tmp_path / "d1", url=f"{base}/junk.tar.gz", timeout=10)
    with pytest.raises(InputError, match=r"exists and is not empty"):
        fetch_eval("ai-psychosis", tmp_path / "d1", url=f"{base}/junk.tar.gz", timeout=10)
    with pytest.raises(InputError, match=r"evals fetch agentic-misalignment: cannot download http://127\.0\.0\.1:9/x"
                                         r".*offline\?"):
        fetch_eval("agentic-misalignment", tmp_path / "d2", url="http://127.0.0.1:9/x.tar.gz", timeout=5)
    with pytest.raises(InputError, match="unknown eval 'nope'"):
        fetch_eval("nope", tmp_path / "d3")


def test_cli_uses_a_directory_already_in_the_layout(tmp_path: Path) -> None:
    _need()
    dest = tmp_path / "psy"
    shutil.copytree(PSY, dest)
    r = subprocess.run([sys.executable, "-m", "traitforge.cli", "evals", "fetch", "ai-psychosis", str(dest)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"{dest}: tim-hua-01/ai-psychosis@b6593b38b18e; use it as evaluation.delusion.dir"
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x.txt").write_text("x")
    r = subprocess.run([sys.executable, "-m", "traitforge.cli", "evals", "fetch", "agentic-misalignment",
                        str(tmp_path / "other")], capture_output=True, text=True)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "exists and is not empty" in r.stderr
