"""`scripted:` a model that answers from a queue or a function, for unit tests of stage logic
(after simonw/llm's mock model). Never the default and never used for network-backend tests."""

from __future__ import annotations

from typing import Callable, ClassVar, Sequence

from traitforge.llm.base import BLOCKED, REFUSED, Backend, Completion, GenerateParams, Message, Usage

# A response is a text, or a whole Completion (e.g. `refusal()`) for stage tests of what a refused,
# blocked or truncated reply does.
Responder = Callable[[Sequence[Message], GenerateParams], "str | Completion"]


def refusal(reason: str = "refusal", *, blocked: bool = False, text: str = "") -> Completion:
    """A scripted refused (or, with `blocked`, safety-blocked) reply with the provider's reason."""
    return Completion(texts=[text], usage=Usage(10, 0), finish_reasons=[reason],
                      outcomes=[BLOCKED if blocked else REFUSED])


class ScriptedBackend(Backend):
    provider: ClassVar[str] = "scripted"
    supports_n = False

    def __init__(self, model: str = "test", responses: Sequence["str | Completion"] | Responder | None = None,
                 **options):
        super().__init__(model, **options)
        self.queue = list(responses) if isinstance(responses, (list, tuple)) else []
        self.responder = responses if callable(responses) else None
        self.calls: list[tuple[list[Message], GenerateParams]] = []

    async def generate(self, messages: Sequence[Message], params: GenerateParams) -> Completion:
        self.calls.append((list(messages), params))
        if self.responder is not None:
            text = self.responder(messages, params)
        elif self.queue:
            text = self.queue.pop(0)
        else:
            raise AssertionError("scripted backend: no responses left in the queue")
        if isinstance(text, Completion):
            return text
        words = sum(len(m.content.split()) for m in messages)
        return Completion(texts=[text], usage=Usage(words, len(text.split())), finish_reasons=["stop"])
