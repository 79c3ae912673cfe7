"""LLM backends behind one async interface, with cache, limits and retries (see client.py)."""

from traitforge.llm.base import Backend, Completion, GenerateParams, Message, Usage

__all__ = ["Backend", "Completion", "GenerateParams", "Message", "Usage"]
