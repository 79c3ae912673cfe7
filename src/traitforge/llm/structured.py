"""Structured output: find the JSON in a reply, validate it, and say what was wrong for a re-ask."""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import BaseModel, ValidationError

_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.S)


def extract_json(text: str) -> Any:
    """The first JSON value in `text` (fenced or bare). Raises ValueError if there is none."""
    candidates = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    decoder = json.JSONDecoder()
    for cand in candidates:
        for i, ch in enumerate(cand):
            if ch in "{[":
                try:
                    value, _ = decoder.raw_decode(cand[i:])
                    return value
                except json.JSONDecodeError:
                    continue
    raise ValueError("no JSON object found in the reply")


def schema_of(model: type[BaseModel] | dict[str, Any]) -> dict[str, Any]:
    return model.model_json_schema() if isinstance(model, type) else model


def validate(value: Any, model: type[BaseModel] | dict[str, Any]) -> Any:
    """Validate against a pydantic model, or the top-level type/required keys of a JSON schema."""
    if isinstance(model, type) and issubclass(model, BaseModel):
        try:
            return model.model_validate(value)
        except ValidationError as e:
            err = e.errors()[0]
            loc = ".".join(str(x) for x in err["loc"]) or "(root)"
            raise ValueError(f"field '{loc}': {err['msg']}") from None
    schema = model
    want = schema.get("type")
    types = {"object": dict, "array": list, "string": str, "number": (int, float), "integer": int, "boolean": bool}
    if want in types and not isinstance(value, types[want]):
        raise ValueError(f"expected a JSON {want}, got {type(value).__name__}")
    if want == "object":
        missing = [k for k in schema.get("required", []) if k not in value]
        if missing:
            raise ValueError(f"missing required keys: {', '.join(missing)}")
    return value


def json_instruction(schema: dict[str, Any]) -> str:
    return ("Reply with only a JSON value that matches this JSON schema, no other text:\n"
            + json.dumps(schema, ensure_ascii=False))
