"""Several OpenAI-compatible servers behind one model: requests spread over both, and when one
server is killed in the middle of a run, its requests move to the other and no row is lost."""

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from llama_server import PROCESSES, llama_server  # noqa: E402

from traitforge.config import ModelSpec  # noqa: E402
from traitforge.jsonl import append_jsonl, iter_jsonl_dicts  # noqa: E402
from traitforge.llm.registry import make_llm  # noqa: E402
from traitforge.progress import gather_progress  # noqa: E402


def test_killing_one_of_two_servers_mid_run_loses_no_rows(tmp_path):
    out = tmp_path / "rows.jsonl"
    with llama_server(threads=1) as a, llama_server(threads=1) as b:
        llm = make_llm(ModelSpec(model="openai:smollm2-135m", base_url=[a, b], concurrency=4),
                       cache=tmp_path / "cache.sqlite")
        served: dict[str, int] = {}
        killed = []

        def on_result(i: int, text: str) -> None:
            append_jsonl(out, [{"id": i, "text": text}])
            if i >= 0 and len(list(iter_jsonl_dicts(out))) == 4 and not killed:
                PROCESSES[b].kill()  # server b dies with requests in flight
                killed.append(b)

        async def go() -> list[str]:
            try:
                return await gather_progress(
                    [llm.generate_one(f"Count to {i}.", max_tokens=12, temperature=0) for i in range(16)],
                    desc="two servers", on_result=on_result)
            finally:
                for s in llm.backend.servers:  # type: ignore[attr-defined]
                    served[s.url] = s.served
                await llm.aclose()

        texts = asyncio.run(go())
    assert killed, "server b was never killed"
    rows = list(iter_jsonl_dicts(out))
    assert sorted(r["id"] for r in rows) == list(range(16))  # every row, once
    assert all(isinstance(t, str) for t in texts) and len(texts) == 16
    assert llm.usage.calls == 16
    assert served[a] >= 4 and served[b] >= 1  # both served before b died; a took over the rest
    assert served[a] + served[b] == 16
