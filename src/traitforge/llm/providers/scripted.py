"""`scripted:` a model that answers from a queue or a function, for unit tests of stage logic
(after simonw/llm's mock model). Never the default and never used for network-backend tests."""

from __future__ import annotations

from typing import Callable, ClassVar, Sequence

from traitforge.llm.base import Backend, Completion, GenerateParams, Message, Usage

Responder = Callable[[Sequence[Message], GenerateParams], str]


class ScriptedBackend(Backend):
    provider: ClassVar[str] = "scripted"
    supports_n = False

    def __init__(self, model: str = "test", responses: Sequence[str] | Responder | None = None, **options):
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
        words = sum(len(m.content.split()) for m in messages)
        return Completion(texts=[text], usage=Usage(words, len(text.split())), finish_reasons=["stop"])
