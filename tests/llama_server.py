"""Start llama.cpp's OpenAI-compatible server (llama-cpp-python[server]) on the embedded GGUF.

Used by tests/conftest.py and bench/backend_overhead.py: a real server on 127.0.0.1, no network.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

import httpx

MODEL_ALIAS = "smollm2-135m"

# Runs `python -m llama_cpp.server` with weight repacking ("extra buffer types") off. A wheel built
# with GGML_NATIVE uses AMX tile kernels for repacked weights when the CPU reports AMX, and this
# sandbox reports AMX but traps on `tileloadd` (SIGILL on the first request). Repacking only speeds
# up big matmuls, so a 135M model loses little without it.
_LAUNCH = """
import runpy, sys
import llama_cpp.llama_cpp as C  # the ctypes module llama.py reads its defaults from
_default = C.llama_model_default_params
def _params():
    p = _default()
    p.use_extra_bufts = False
    return p
C.llama_model_default_params = _params
sys.argv = ["llama_cpp.server"] + sys.argv[1:]
runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)
"""


# base URL -> server process, so a test can kill one server in the middle of a run.
PROCESSES: dict[str, subprocess.Popen] = {}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def llama_cpp_missing() -> str | None:
    """Why the server cannot start, or None when llama-cpp-python[server] is importable."""
    try:
        import llama_cpp.server  # noqa: F401
    except ImportError as e:
        return (f"llama-cpp-python[server] is not installed ({e}): "
                "pip install 'llama-cpp-python[server]' (it is in the dev extra)")
    return None


@contextlib.contextmanager
def llama_server(n_ctx: int = 2048, threads: int = 2, startup_s: float = 120.0) -> Iterator[str]:
    """Yield the base URL (…/v1) of a running server; kill it on exit."""
    from traitforge.llm.embedded import gguf_path

    port = free_port()
    log = tempfile.NamedTemporaryFile("w+", prefix="llama_server_", suffix=".log", delete=False)
    cmd = [sys.executable, "-c", _LAUNCH, "--model", str(gguf_path()),
           "--model_alias", MODEL_ALIAS, "--host", "127.0.0.1", "--port", str(port),
           "--n_ctx", str(n_ctx), "--n_threads", str(threads), "--n_threads_batch", str(threads)]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ})
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + startup_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"llama.cpp server exited with {proc.returncode}: "
                                   f"{Path(log.name).read_text()[-2000:]}")
            try:
                if httpx.get(f"{base}/models", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"llama.cpp server did not answer /v1/models within {startup_s:.0f}s "
                                   f"(log {log.name})")
            time.sleep(0.3)
        PROCESSES[base] = proc
        yield base
    finally:
        PROCESSES.pop(base, None)
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        os.unlink(log.name)
