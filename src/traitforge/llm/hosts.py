"""Is a base_url the provider's own API host? One check, used by the key rule (an environment key
goes only to its provider's own hosts), the OpenAI token-limit name (`max_completion_tokens` on
OpenAI's own API, `max_tokens` on compatible servers) and the model table's defaults."""

from __future__ import annotations

from urllib.parse import urlsplit

# Host names (exact, or a suffix after a dot) that belong to each provider's own API.
OWN_HOSTS: dict[str, tuple[str, ...]] = {
    "openai": ("api.openai.com",),
    "anthropic": ("api.anthropic.com",),
    "gemini": ("generativelanguage.googleapis.com",),
}


def host_of(base_url: str | None) -> str:
    if not base_url:
        return ""
    url = base_url if "://" in base_url else f"https://{base_url}"
    return (urlsplit(url).hostname or "").lower().rstrip(".")


def is_provider_host(provider: str, base_url: str | None) -> bool:
    """True for no base_url (the SDK's default host) or a URL on one of the provider's own hosts.
    Only https counts: a plain-http URL naming the host is someone else's server in between."""
    if not base_url:
        return provider in OWN_HOSTS
    url = base_url if "://" in base_url else f"https://{base_url}"
    if urlsplit(url).scheme.lower() != "https":
        return False
    host = host_of(base_url)
    return any(host == h or host.endswith("." + h) for h in OWN_HOSTS.get(provider, ()))
