"""What an import kept and what it left out, by reason, with where (file:line or row index)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

EXAMPLES = 3  # locations kept per reason


@dataclass
class ImportReport:
    path: str
    kind: str  # "chats" | "documents"
    kept: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    formats: Counter[str] = field(default_factory=Counter)  # row format -> rows read in it
    system_turns: int = 0  # system turns stripped from the kept chats (never trained on)
    chats_with_system: int = 0
    untagged: int = 0  # kept rows without a trait tag

    def drop(self, reason: str, where: str, detail: str = "") -> None:
        self.dropped[reason] += 1
        ex = self.examples.setdefault(reason, [])
        if len(ex) < EXAMPLES:
            ex.append(f"{where} ({detail})" if detail else where)

    @property
    def total_dropped(self) -> int:
        return sum(self.dropped.values())

    def summary(self) -> str:
        """One line: kept, left out by reason, system turns stripped, untagged."""
        parts = [f"{self.path}: {self.kept} {self.kind} kept"]
        if self.dropped:
            why = ", ".join(f"{n} {r}" for r, n in self.dropped.most_common())
            parts.append(f"{self.total_dropped} left out ({why})")
        else:
            parts.append("0 left out")
        if self.kind == "chats":
            parts.append(f"{self.system_turns} system turns stripped from {self.chats_with_system} chats")
        parts.append(f"{self.untagged} untagged")
        return ", ".join(parts)

    def lines(self) -> list[str]:
        """The summary, then one line per reason with its first locations."""
        return [self.summary()] + [f"  {r}: {n}, e.g. {'; '.join(self.examples.get(r, []))}"
                                   for r, n in self.dropped.most_common()]

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "kind": self.kind, "kept": self.kept, "dropped": dict(self.dropped),
                "examples": self.examples, "formats": dict(self.formats), "system_turns": self.system_turns,
                "chats_with_system": self.chats_with_system, "untagged": self.untagged}
