"""The key rule: a provider's key from the environment goes only to that provider's own hosts; a
custom base_url takes its key from an explicit api_key_env (or none). And secrets never reach an
error text: `llm.secrets.scrub` on every backend error and on the CLI's error line."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from replay_server import Captured, Reply, ReplayServer, fixture
from traitforge.llm.base import GenerateParams, Message
from traitforge.llm.errors import BackendError
from traitforge.llm.providers import _http
from traitforge.llm.providers.anthropic import AnthropicBackend
from traitforge.llm.providers.gemini import GeminiBackend
from traitforge.llm.providers.openai_compat import OpenAIBackend

KEYS = {"OPENAI_API_KEY": "sk-proj-envkey0123456789abcdefOPENAI",
        "ANTHROPIC_API_KEY": "sk-ant-api03-envkey0123456789abcdefANTH",
        "GEMINI_API_KEY": "AIzaSyEnvKey0123456789abcdefghijklmnoGEM"}
ROUTES = {"openai": (r"/chat/completions$", "openai_chat_completion.json"),
          "anthropic": (r"/v1/messages$", "anthropic_message.json"),
          "gemini": (r":generateContent$", "gemini_response.json")}


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    for var, value in KEYS.items():
        monkeypatch.setenv(var, value)
    getattr(_http, "_WARNED", set()).clear()  # one warning per server and process


def backend(provider: str, url: str, **kw: Any) -> Any:
    if provider == "openai":
        return OpenAIBackend("gpt-4o", base_url=url + "/v1", timeout_s=5, **kw)
    cls = AnthropicBackend if provider == "anthropic" else GeminiBackend
    return cls("claude-sonnet-4-5" if provider == "anthropic" else "gemini-2.5-flash", base_url=url, timeout_s=5,
               **kw)


def ask(b: Any) -> Any:
    async def go() -> Any:
        try:
            return await b.generate([Message("user", "hi")], GenerateParams(max_tokens=8))
        finally:
            await b.aclose()
    return asyncio.run(go())


def sent_headers(server: ReplayServer) -> str:
    return " ".join(f"{k}={v}" for c in server.requests for k, v in c.headers.items())


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.mark.parametrize("provider", ["openai", "anthropic", "gemini"])
def test_an_env_key_never_goes_to_someone_elses_server(provider):
    path, name = ROUTES[provider]
    seen = _Records()  # on the logger itself: the CLI turns propagation to the root off
    logging.getLogger("traitforge.llm.keys").addHandler(seen)
    try:
        with ReplayServer() as server:
            server.route("POST", path, Reply.of(name))
            assert ask(backend(provider, server.url)).texts[0]
            assert ask(backend(provider, server.url)).texts[0]  # a second backend: still one warning
            headers = sent_headers(server)
    finally:
        logging.getLogger("traitforge.llm.keys").removeHandler(seen)
    assert not any(key in headers for key in KEYS.values())
    warnings = [r.getMessage() for r in seen.records]
    assert len(warnings) == 1 and "api_key_env" in warnings[0] and server.url in warnings[0]


@pytest.mark.parametrize("provider", ["openai", "anthropic", "gemini"])
def test_an_explicit_api_key_env_is_sent_to_the_custom_server(provider, monkeypatch):
    path, name = ROUTES[provider]
    monkeypatch.setenv("MY_PROXY_KEY", "proxy-key-0123456789")
    with ReplayServer() as server:
        server.route("POST", path, Reply.of(name))
        ask(backend(provider, server.url, api_key_env="MY_PROXY_KEY"))
        headers = sent_headers(server)
    assert "proxy-key-0123456789" in headers and not any(key in headers for key in KEYS.values())


def test_the_provider_own_host_gets_the_env_key_and_a_look_alike_does_not():
    assert OpenAIBackend("gpt-4o")._key == KEYS["OPENAI_API_KEY"]
    assert OpenAIBackend("gpt-4o", base_url="https://api.openai.com/v1")._key == KEYS["OPENAI_API_KEY"]
    assert AnthropicBackend("claude-sonnet-4-5")._key == KEYS["ANTHROPIC_API_KEY"]
    assert GeminiBackend("gemini-2.5-flash")._key == KEYS["GEMINI_API_KEY"]
    for url in ("http://api.openai.com/v1", "https://api.openai.com.evil.example/v1", "https://proxy.example/v1"):
        assert OpenAIBackend("gpt-4o", base_url=url)._key == _http.DUMMY_KEY
    # a list of servers is only the provider's own when every one of them is
    assert OpenAIBackend("gpt-4o", base_url=["https://api.openai.com/v1", "http://127.0.0.1:9/v1"])._key \
        == _http.DUMMY_KEY


def test_a_401_from_a_custom_server_given_no_key_names_api_key_env():
    with ReplayServer() as server:
        server.route("POST", ROUTES["openai"][0], Reply.of("openai_error_401.json"))
        with pytest.raises(BackendError) as err:
            ask(backend("openai", server.url))
    message = str(err.value)
    assert "(401)" in message and "no key was sent" in message and "api_key_env" in message
    assert "$OPENAI_API_KEY" in message and KEYS["OPENAI_API_KEY"] not in message


@pytest.mark.parametrize("provider", ["openai", "anthropic", "gemini"])
def test_a_server_error_echoing_the_key_is_scrubbed(provider, monkeypatch):
    monkeypatch.setenv("MY_PROXY_KEY", "proxy-secret-0123456789xyz")
    path, _ = ROUTES[provider]

    def echo(cap: Captured) -> Reply:  # a server that quotes the credentials it got
        creds = " ".join(v for k, v in cap.headers.items() if k in ("authorization", "x-api-key", "x-goog-api-key"))
        return Reply(400, {"error": {"message": f"bad request from {creds}", "type": "invalid_request_error",
                                     "code": 400, "status": "INVALID_ARGUMENT"}})

    with ReplayServer() as server:
        server.route("POST", path, echo)
        with pytest.raises(BackendError) as err:
            ask(backend(provider, server.url, api_key_env="MY_PROXY_KEY"))
    assert "proxy-secret-0123456789xyz" not in str(err.value) and "[redacted $MY_PROXY_KEY]" in str(err.value)


def test_scrub_replaces_key_values_and_key_shaped_tokens():
    from traitforge.llm.secrets import scrub

    text = (f"key {KEYS['OPENAI_API_KEY']} and {KEYS['GEMINI_API_KEY']}; a stray sk-abcdefghijklmnopqrstu; "
            "Incorrect API key provided: sk-proj-****.")
    out = scrub(text)
    assert not any(v in out for v in KEYS.values()) and "sk-abcdefghijklmnopqrstu" not in out
    assert "[redacted $OPENAI_API_KEY]" in out and "[redacted $GEMINI_API_KEY]" in out
    assert "sk-proj-****" in out  # already masked by the server: left as it is
    assert scrub("no secrets here, sk-no-key-needed") == "no secrets here, sk-no-key-needed"


def test_the_cli_error_line_is_scrubbed(monkeypatch, capsys):
    from traitforge import cli
    from traitforge.errors import TraitforgeError

    def boom(*a: Any, **k: Any) -> None:
        raise TraitforgeError(f"openai:gpt-4o: request rejected (400): key {KEYS['OPENAI_API_KEY']} is odd")

    monkeypatch.setattr(cli.cli, "main", boom)
    monkeypatch.setattr("traitforge.logs.quiet_screen", lambda: None)  # leaves the test run's logging alone
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and KEYS["OPENAI_API_KEY"] not in err and "[redacted $OPENAI_API_KEY]" in err


def test_fixtures_used_here_name_their_source():
    for _, name in ROUTES.values():
        assert fixture(name)["source"]
