"""Shared fixtures. `llama_server`: a real llama.cpp OpenAI-compatible server on the embedded GGUF."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterator

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # helper modules beside the tests (fault_server, ...)

from llama_server import llama_cpp_missing, llama_server as _llama_server  # noqa: E402


@pytest.fixture(scope="session")
def llama_server() -> Iterator[str]:
    """Base URL (http://127.0.0.1:PORT/v1) of a llama.cpp server; fails, never skips, if it cannot run."""
    missing = llama_cpp_missing()
    if missing:
        pytest.fail(f"llama_server fixture: {missing}", pytrace=False)
    # One thread: on 2 cores shared with other jobs, two spinning llama.cpp threads stall each other.
    with _llama_server(n_ctx=2048, threads=1) as url:
        yield url
