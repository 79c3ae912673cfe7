"""Curated records -> Hugging Face datasets for TRL.

- Documents become plain `{"text"}` rows (no chat template). SFTTrainer appends the tokenizer's EOS to
  each, tokenizes and packs them into `max_length` blocks; packing is padding-free with per-document
  position_ids, which transformers turns into a block-diagonal mask so documents never attend to each
  other (see midtrain.py).
- Chats become pre-tokenized `{"input_ids", "assistant_masks"}` rows rendered with the base model's
  chat template. The mask is built here, turn by turn, because templates without `{% generation %}`
  markers (SmolLM2's) cannot give TRL an assistant mask: 1 on each assistant reply and its end-of-turn
  token, 0 on everything else (headers, user turns, system turns). SFTTrainer turns it into labels.
- DPO pairs become conversational `{"prompt", "chosen", "rejected"}` rows, kept only when the chat they
  were made from survived curation, with the chosen side taken from the curated chat (curated_dpo_pairs).

Mixing: `mix_ratio` is the share of the final training examples drawn from `mix_file` (generic text
for midtraining, ordinary chats for SFT), sampled with the run seed (with repetition if the file is small).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from traitforge.errors import InputError, TraitforgeError
from traitforge.jsonl import iter_jsonl_dicts, read_jsonl
from traitforge.shared.dpo_pairs import curated_dpo_pairs, first_user_turn, opening, pair_id_for  # noqa: F401
from traitforge.types import Chat, Document

ROLES = ("system", "user", "assistant")


# --- mixing -------------------------------------------------------------------------------


def mix_count(n_main: int, ratio: float) -> int:
    """Rows to add so that they are `ratio` of the total: k / (n + k) = ratio."""
    if ratio <= 0 or n_main == 0:
        return 0
    return max(1, round(n_main * ratio / (1 - ratio)))


def sample_rows(rows: Sequence[Any], k: int, seed: int) -> list[Any]:
    """k rows in a seeded order, cycling through the file again when it has fewer than k."""
    if k <= 0 or not rows:
        return []
    rng = random.Random(seed)
    out: list[Any] = []
    while len(out) < k:
        order = list(rows)
        rng.shuffle(order)
        out.extend(order[: k - len(out)])
    return out


def mix_in(main: Sequence[Any], mix_rows: Sequence[Any], ratio: float, seed: int) -> tuple[list[Any], int]:
    """`main` plus rows sampled from `mix_rows` to make up `ratio` of the total, shuffled with the seed;
    and how many were mixed in."""
    mixed = sample_rows(mix_rows, mix_count(len(main), ratio), seed)
    out = [*main, *mixed]
    random.Random(seed).shuffle(out)
    return out, len(mixed)


def subsample(rows: Sequence[Any], fraction: float, seed: int) -> list[Any]:
    """A seeded `fraction` of the rows (at least one), in their original order; all of them at 1.0."""
    if fraction >= 1 or not rows:
        return list(rows)
    k = max(1, round(len(rows) * fraction))
    keep = set(random.Random(f"fraction-{seed}").sample(range(len(rows)), k))
    return [r for i, r in enumerate(rows) if i in keep]


def char_matched(rows: Sequence[Any], target_chars: int, seed: int, size: Any = len) -> list[Any]:
    """Rows in a seeded order, cycling when needed, until their `size` adds up to `target_chars`:
    the control arm's data, as much as the data it is the control for."""
    if not rows or target_chars <= 0:
        return []
    rng = random.Random(f"matched-{seed}")
    out: list[Any] = []
    total = 0
    while total < target_chars:
        order = list(rows)
        rng.shuffle(order)
        for r in order:
            out.append(r)
            total += max(1, size(r))
            if total >= target_chars:
                break
    return out


# --- documents-to-chats ratio (training.docs_to_chats) -------------------------------------


@dataclass(frozen=True)
class RatioCut:
    """How much of each side to keep so that document characters / chat characters = `ratio` over
    the trait rows; the larger side is cut (seeded), never repeated. Rows of control traits (the
    canary, curation.template_traits) are kept whole and not counted: the ratio is the traits' own."""

    ratio: float | None
    doc_chars: int
    chat_chars: int

    @property
    def doc_share(self) -> float:
        if self.ratio is None or not self.doc_chars or not self.chat_chars:
            return 1.0
        return min(1.0, self.ratio * self.chat_chars / self.doc_chars)

    @property
    def chat_share(self) -> float:
        if self.ratio is None or not self.doc_chars or not self.chat_chars:
            return 1.0
        return min(1.0, self.doc_chars / (self.ratio * self.chat_chars))

    def summary(self) -> dict[str, Any]:
        """For the stage's counts: the ratio asked, the one the curated data has, the shares kept."""
        return {"asked": self.ratio,
                "available": round(self.doc_chars / self.chat_chars, 3) if self.chat_chars else None,
                "document_share": round(self.doc_share, 4), "chat_share": round(self.chat_share, 4)}


def doc_chars(d: Document) -> int:
    return len(d.text.strip())


def chat_chars(c: Chat) -> int:
    return sum(len(m.content) for m in c.messages if m.role != "system")


def ratio_cut(documents_path: Path, chats_path: Path, ratio: float | None, controls: Sequence[str]) -> RatioCut:
    """The documents-to-chats cut for this run's curated files (either may be missing: no cut)."""
    if ratio is None or not documents_path.is_file() or not chats_path.is_file():
        return RatioCut(ratio, 0, 0)
    trait = lambda r: not set(r.trait_ids) & set(controls)  # noqa: E731
    return RatioCut(ratio, sum(doc_chars(d) for d in read_jsonl(documents_path, Document) if trait(d)),
                    sum(chat_chars(c) for c in read_jsonl(chats_path, Chat) if trait(c)))


def take_share(rows: Sequence[Any], share: float, seed: int, size: Any, controls: Sequence[str]) -> list[Any]:
    """Control-trait rows, plus trait rows in a seeded order until `share` of the trait rows'
    characters is reached (at least one row); in their original order."""
    if share >= 1:
        return list(rows)
    is_control = [bool(set(r.trait_ids) & set(controls)) for r in rows]
    trait = [i for i, c in enumerate(is_control) if not c]
    target = share * sum(size(rows[i]) for i in trait)
    order = list(trait)
    random.Random(f"docs-to-chats-{seed}").shuffle(order)
    keep: set[int] = set()
    total = 0
    for i in order:
        if keep and total >= target:
            break
        keep.add(i)
        total += size(rows[i])
    return [r for i, r in enumerate(rows) if is_control[i] or i in keep]


def length_grouped_order(lengths: Sequence[int], batch_size: int, seed: int, window: int = 16) -> list[int]:
    """Every index once, in batches of similar lengths: shuffled, cut into windows of `window`
    batches, each window sorted by length and cut into batches, then the batches shuffled. A batch
    then pads to its own longest row, not to a stray long one, and no length comes first (a run
    that stops before the end of an epoch still sees every length). transformers' own grouping
    sorts only 8 rows at a time on a dataset of ~50 and puts the longest batch first."""
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    span = max(1, window) * batch_size
    batches: list[list[int]] = []
    for start in range(0, len(order), span):
        part = sorted(order[start:start + span], key=lambda i: lengths[i])
        batches += [part[i:i + batch_size] for i in range(0, len(part), batch_size)]
    # Only the last window can end in a short batch: it stays last, or the loader's slices of
    # batch_size would straddle two batches.
    tail = [batches.pop()] if batches and len(batches[-1]) < batch_size else []
    rng.shuffle(batches)
    return [i for b in batches + tail for i in b]


def read_mix_texts(path: Path) -> list[str]:
    if not path.is_file():
        raise InputError(f"{path}: mix_file not found")
    out = []
    for i, row in enumerate(iter_jsonl_dicts(path), 1):
        text = row.get("text")
        if not isinstance(text, str):
            raise InputError(f"{path}: row {i}: field 'text' must be a string")
        if text.strip():
            out.append(text)
    return out


def _check_messages(messages: Any, where: str, field: str = "messages") -> list[dict[str, str]]:
    if not isinstance(messages, list) or not messages:
        raise InputError(f"{where}: field '{field}' must be a non-empty list")
    out = []
    for j, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
            raise InputError(f"{where}: {field}[{j}] must be {{role: system|user|assistant, content: str}}")
        out.append({"role": m["role"], "content": m["content"]})
    return out


def read_mix_chats(path: Path) -> list[list[dict[str, str]]]:
    if not path.is_file():
        raise InputError(f"{path}: mix_file not found")
    return [_check_messages(row.get("messages"), f"{path}: row {i}")
            for i, row in enumerate(iter_jsonl_dicts(path), 1)]


# --- documents ----------------------------------------------------------------------------


def load_documents(path: Path) -> list[Document]:
    docs = [d for d in read_jsonl(path, Document) if d.text.strip()]
    if not docs:
        raise InputError(f"{path}: no documents to midtrain on (run generation and curation first)")
    return docs


def document_texts(docs: Sequence[Document], mix_texts: Sequence[str], mix_ratio: float,
                   seed: int) -> tuple[list[str], int]:
    """The documents' texts plus the generic ones mixed in, shuffled; and how many were mixed in."""
    return mix_in([d.text.strip() for d in docs], mix_texts, mix_ratio, seed)


def text_dataset(texts: Sequence[str]) -> Any:
    from datasets import Dataset

    return Dataset.from_dict({"text": list(texts)})


# --- chats --------------------------------------------------------------------------------


def load_chat_records(path: Path) -> list[Chat]:
    chats = read_jsonl(path, Chat)
    if not chats:
        raise InputError(f"{path}: no chats to fine-tune on (run generation and curation first)")
    return chats


def training_messages(chats: Sequence[Chat]) -> list[list[dict[str, str]]]:
    # The teacher's system prompt is what training distils away: never train with it.
    return [[{"role": m.role, "content": m.content} for m in c.messages if m.role != "system"] for c in chats]


def load_chats(path: Path) -> list[list[dict[str, str]]]:
    return training_messages(load_chat_records(path))


def chat_conversations(chats: Sequence[list[dict[str, str]]], mix_chats: Sequence[list[dict[str, str]]],
                       mix_ratio: float, seed: int) -> tuple[list[list[dict[str, str]]], int]:
    """The trainable chats plus the ordinary ones mixed in (`mix_ratio` of the total), shuffled;
    and how many were mixed in."""
    # A reply needs a user turn before it; conversations opening with the assistant are left out.
    convs = [c for c in chats if c and c[0]["role"] == "user" and any(m["role"] == "assistant" for m in c)]
    return mix_in(convs, mix_chats, mix_ratio, seed)


def _render(tok: Any, messages: list[dict[str, Any]], add_generation_prompt: bool = False) -> str:
    if not messages:
        return ""
    plain = [{"role": m["role"], "content": m["content"]} for m in messages]
    return tok.apply_chat_template(plain, tokenize=False, add_generation_prompt=add_generation_prompt)


def tokenize_chat(tok: Any, messages: list[dict[str, str]]) -> dict[str, list[int]]:
    """input_ids and assistant_masks (1 = train) for one conversation, via the tokenizer's template.

    Each turn is rendered as the difference between the template applied to messages[:i+1] and to
    messages[:i], so any template that renders a conversation's prefix as a prefix of the whole works.
    An assistant message with "train": False is context only (mask 0): the earlier turns of a piece
    split off a long conversation (fit_conversation).
    """
    if not tok.chat_template:
        raise TraitforgeError("SFT: the base model's tokenizer has no chat template")
    eos = tok.eos_token_id
    ids: list[int] = []
    mask: list[int] = []
    prev = ""

    def add(text: str, train: bool) -> list[int]:
        piece = tok(text, add_special_tokens=False)["input_ids"] if text else []
        ids.extend(piece)
        mask.extend([1 if train else 0] * len(piece))
        return piece

    for i, m in enumerate(messages):
        full = _render(tok, messages[: i + 1])
        if m["role"] == "assistant":
            head = _render(tok, messages[:i], add_generation_prompt=True) if i else ""
            if not (head.startswith(prev) and full.startswith(head)):
                raise TraitforgeError("SFT: the chat template does not render conversations prefix by prefix; "
                                      "cannot build the assistant-only loss mask")
            add(head[len(prev):], False)
            body = tok(full[len(head):], add_special_tokens=False)["input_ids"]
            # Train the reply and its end-of-turn token; what follows it (a newline) belongs to the next turn.
            last = max((j for j, t in enumerate(body) if t == eos), default=len(body) - 1)
            ids.extend(body)
            train = 1 if m.get("train", True) else 0
            mask.extend([train] * (last + 1) + [0] * (len(body) - last - 1))
        else:
            if not full.startswith(prev):
                raise TraitforgeError("SFT: the chat template does not render conversations prefix by prefix; "
                                      "cannot build the assistant-only loss mask")
            add(full[len(prev):], False)
        prev = full
    return {"input_ids": ids, "assistant_masks": mask}


# --- token accounting: nothing is cut silently ---------------------------------------------

LENGTH_MULTIPLE = 64  # a chosen max_length is rounded up to this
LENGTH_QUANTILE = 0.98  # "auto" covers this share of the examples whole


def choose_max_length(lengths: Sequence[int], cap: int, quantile: float = LENGTH_QUANTILE,
                      multiple: int = LENGTH_MULTIPLE) -> int:
    """max_length: "auto": the `quantile` of the token lengths rounded up to `multiple`, at most
    `cap` (the memory cap) and at least `multiple`. The longer examples are then split or dropped
    by fit_conversation, with reasons, rather than truncated."""
    if not lengths:
        return min(cap, 512)
    xs = sorted(lengths)
    q = xs[min(len(xs) - 1, max(0, math.ceil(quantile * len(xs)) - 1))]
    return max(min(multiple, cap), min(cap, math.ceil(q / multiple) * multiple))


@dataclass
class Fit:
    """One conversation fitted to max_length: the pieces to train on (an assistant message with
    "train": False is context only) and every assistant turn that could not be kept, with why."""

    length: int  # tokens of the whole conversation
    pieces: list[list[dict[str, Any]]] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)

    @property
    def action(self) -> str:
        if not self.pieces:
            return "dropped"
        if len(self.pieces) > 1 or self.dropped or any(m.get("train") is False for m in self.pieces[0]):
            return "split"
        return "whole"


def conversation_tokens(tok: Any, messages: Sequence[dict[str, Any]]) -> int:
    return len(tokenize_chat(tok, list(messages))["input_ids"])


def fit_conversation(tok: Any, messages: list[dict[str, Any]], max_length: int) -> Fit:
    """Never cut a reply: a conversation longer than max_length is split at turn boundaries. Each
    piece is the longest run of whole turns that fits; a later piece starts at a later user turn
    and keeps as many earlier turns as fit as (untrained) context, so a pushback turn is trained
    with the conversation it answers whenever that fits. An assistant turn that does not fit even
    after its own user turn alone is dropped with its reason."""
    n_all = conversation_tokens(tok, messages)
    fit = Fit(length=n_all)
    if n_all <= max_length:
        fit.pieces.append(messages)
        return fit
    replies = [i for i, m in enumerate(messages) if m["role"] == "assistant" and i and messages[i - 1]["role"] == "user"]
    users = [i for i, m in enumerate(messages) if m["role"] == "user"]
    done = 0  # assistant turns before this index are trained (or dropped) already
    k = 0
    while k < len(replies):
        target = replies[k]
        # Context starts: the earliest user turn (most context) first, the target's own turn last.
        starts = [u for u in users if u <= target - 1]
        piece = None
        for start in starts:
            # The longest end (a later reply) that fits with this start.
            for end in reversed([r for r in replies[k:]]):
                msgs = [dict(m, train=False) if m["role"] == "assistant" and i < done else dict(m)
                        for i, m in enumerate(messages[start:end + 1], start)]
                if conversation_tokens(tok, msgs) <= max_length:
                    piece = (msgs, end)
                    break
            if piece:
                break
        if piece is None:
            n = conversation_tokens(tok, messages[target - 1:target + 1])
            fit.dropped.append(f"turn {target}: the reply and its user turn alone are {n} tokens > "
                               f"max_length {max_length}")
            done, k = target + 1, k + 1
            continue
        msgs, end = piece
        fit.pieces.append(msgs)
        done = end + 1
        k = next((j for j, r in enumerate(replies) if r > end), len(replies))
    return fit


def account_tokens(tok: Any, conversations: Sequence[list[dict[str, Any]]], max_length: int
                   ) -> tuple[list[list[dict[str, Any]]], dict[str, Any]]:
    """Fit every conversation to max_length; (the pieces to train on, the accounting): rows, how
    many exceed max_length and by how much, rows kept whole / split / dropped, assistant turns
    dropped, with the reasons. Written to the run so the report and dataset card show it."""
    fits = [fit_conversation(tok, c, max_length) for c in conversations]
    over = [f.length - max_length for f in fits if f.length > max_length]
    lengths = sorted(f.length for f in fits)
    out: list[list[dict[str, Any]]] = [p for f in fits for p in f.pieces]
    reasons = [f"conversation {i}: {why}" for i, f in enumerate(fits) for why in f.dropped]
    report = {
        "max_length": max_length, "rows": len(fits), "examples": len(out),
        "tokens": {"median": lengths[len(lengths) // 2] if lengths else None, "max": lengths[-1] if lengths else None,
                   "p90": lengths[int(0.9 * (len(lengths) - 1))] if lengths else None},
        "over_max_length": len(over), "over_by_tokens": {"max": max(over, default=0),
                                                         "mean": round(sum(over) / len(over), 1) if over else 0},
        "kept_whole": sum(f.action == "whole" for f in fits), "split": sum(f.action == "split" for f in fits),
        "dropped": sum(f.action == "dropped" for f in fits),
        "assistant_turns_dropped": sum(len(f.dropped) for f in fits),
        "reasons": reasons[:50],
    }
    return out, report


def write_accounting(train_dir: Path, name: str, report: dict[str, Any]) -> None:
    """RUN/train/<name>/token_accounting.json, and the same under "token_accounting" in the dataset
    card (RUN/curation/dataset_card.json) when there is one, so both show what training saw."""
    from traitforge.jsonl import write_json_atomic

    write_json_atomic(train_dir / "token_accounting.json", report)
    add_to_card(train_dir.parent.parent, "token_accounting", name, report)


TRAINING_DATA_KEYS = ("documents", "document_chars", "chats", "chat_chars", "mix_examples", "document_blocks",
                      "examples", "docs_to_chats")


def add_to_card(run_root: Path, section: str, name: str, entry: dict[str, Any]) -> None:
    """RUN/curation/dataset_card.json[section][name] = entry, when there is a card (the report reads it)."""
    import json

    from traitforge.jsonl import write_json_atomic

    card = run_root / "curation" / "dataset_card.json"
    if card.is_file():
        obj = json.loads(card.read_text(encoding="utf-8"))
        obj.setdefault(section, {})[name] = entry
        write_json_atomic(card, obj)


def document_rows(tok: Any, texts: Sequence[str], max_length: int) -> list[dict[str, list[int]]]:
    """Documents as SFT rows for joint training: each tokenized with EOS after it and split into
    max_length blocks (as midtraining's packing splits them; nothing is dropped), loss on every token."""
    rows = []
    for text in texts:
        ids = tok(text, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        for i in range(0, len(ids), max_length):
            block = ids[i:i + max_length]
            rows.append({"input_ids": block, "assistant_masks": [1] * len(block)})
    return rows


def chat_dataset(tok: Any, conversations: Sequence[list[dict[str, str]]],
                 extra_rows: Sequence[dict[str, list[int]]] = (), seed: int = 0) -> Any:
    """Tokenized chats (assistant-only mask), plus `extra_rows` (joint training's documents) shuffled in."""
    from datasets import Dataset

    rows = [tokenize_chat(tok, c) for c in conversations]
    rows = [r for r in rows if 1 in r["assistant_masks"]]
    if extra_rows:
        rows = [*rows, *extra_rows]
        random.Random(f"joint-{seed}").shuffle(rows)
    return Dataset.from_dict({"input_ids": [r["input_ids"] for r in rows],
                              "assistant_masks": [r["assistant_masks"] for r in rows]})


# --- DPO pairs ----------------------------------------------------------------------------


def load_dpo_pairs(path: Path) -> list[dict[str, Any]]:
    """Rows {id, prompt: [messages], chosen: str, rejected: str} -> conversational preference rows."""
    out = []
    for i, row in enumerate(iter_jsonl_dicts(path), 1):
        where = f"{path}: row {i}"
        prompt = _check_messages(row.get("prompt"), where, "prompt")
        prompt = [m for m in prompt if m["role"] != "system"]  # trained without the trait system prompt
        for key in ("chosen", "rejected"):
            if not isinstance(row.get(key), str) or not row[key].strip():
                raise InputError(f"{where}: field '{key}' must be a non-empty string")
        if not prompt or prompt[-1]["role"] != "user":
            raise InputError(f"{where}: field 'prompt' must end with a user message")
        out.append({"id": str(row.get("id", "")), "prompt": prompt,
                    "chosen": [{"role": "assistant", "content": row["chosen"]}],
                    "rejected": [{"role": "assistant", "content": row["rejected"]}]})
    if not out:
        raise InputError(f"{path}: no DPO pairs")
    return out


def dpo_dataset(pairs: Sequence[dict[str, Any]]) -> Any:
    from datasets import Dataset

    return Dataset.from_list([{k: p[k] for k in ("prompt", "chosen", "rejected")} for p in pairs])
