"""The `local` provider: a model running in process, with no key and no network.

`local/gemma-3-270m` (the default when no model is configured) or `local/<file.gguf>`.
Two modes:

- `grounded` (the default): every value is chosen among candidates found in the
  document by the model's likelihood (see `grounded`), so answers fit the schema and
  strings carry their character spans.
- `json_schema`: the model writes the record freely under a grammar compiled from the
  schema (the plain baseline).

A reask works as it does remotely: in `grounded` mode the values the validator rejected
are excluded and the next likeliest are chosen; in `json_schema` mode the errors go into
the prompt. Needs the `local` extra: `pip install "extractor[local]"`.
"""

from __future__ import annotations

import itertools
import json
import re
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

from extractor.errors import InvalidAnswer
from extractor.local.engine import load_engine
from extractor.local.grounded import GroundedExtractor, bounded_schema
from extractor.local.weights import model_path

if TYPE_CHECKING:
    from extractor.result import Attempt
    from extractor.schema import CompiledSchema

__all__ = ["complete"]

#: Token budget of a freely generated record, unless `max_completion_tokens` says otherwise.
DEFAULT_MAX_TOKENS: Final = 512
_ids = itertools.count(1)
_SAMPLING: Final = {
    "temperature": "temperature",
    "top_p": "top_p",
    "seed": "seed",
    "stop": "stop",
    "frequency_penalty": "frequency_penalty",
    "presence_penalty": "presence_penalty",
}


def complete(
    model: str,
    mode: str,
    *,
    document: str,
    schema: CompiledSchema[Any],
    body: dict[str, Any],
    attempts: Sequence[Attempt],
    examples: Sequence[tuple[str, Any]] = (),
) -> dict[str, Any]:
    """Answer one request in process, as a chat.completion object."""
    engine = load_engine(model_path(model))
    started = time.perf_counter()
    limit = int(body.get("max_tokens") or body.get("max_completion_tokens") or DEFAULT_MAX_TOKENS)
    message: dict[str, Any] = {"role": "assistant"}
    if mode == "grounded":
        extractor = GroundedExtractor(
            engine,
            schema.schema,
            document,
            banned=_rejected(attempts),
            max_tokens=limit,
            examples=examples,
        )
        choice = extractor.run()
        message["content"] = json.dumps(choice.record, ensure_ascii=False)
        message["spans"] = choice.spans
        prompt_tokens = extractor.prompt_tokens
        completion_tokens = extractor.completion_tokens
        finish = "stop"
    else:
        sampling = {_SAMPLING[k]: v for k, v in body.items() if k in _SAMPLING}
        sampling.setdefault("temperature", 0.0)
        prompt = engine.tokenize(_render(body["messages"]), bos=True)
        with engine.lock:
            text, finish, completion_tokens = engine.generate(
                prompt, bounded_schema(schema.schema), max_tokens=limit, **sampling
            )
        message["content"] = text
        prompt_tokens = len(prompt)
    return {
        "id": f"local-{next(_ids)}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "elapsed_s": round(time.perf_counter() - started, 4),
        },
    }


def _render(messages: Sequence[dict[str, Any]]) -> str:
    """A conversation as plain text, for a base model without a chat template."""
    parts = []
    for message in messages:
        content = message.get("content") or ""
        role = message.get("role")
        if role == "system":
            parts.append(f"{content}\n")
        elif role == "user":
            parts.append(f"Input:\n{content}\n")
        elif role == "assistant":
            parts.append(f"Answer:\n{content}\n")
    return "\n".join(parts) + "\nAnswer:\n"


def _rejected(attempts: Sequence[Attempt]) -> dict[str, set[str]]:
    """Values the validator refused in earlier attempts, by field path: not offered again."""
    banned: dict[str, set[str]] = {}
    for attempt in attempts:
        if not isinstance(attempt.error, InvalidAnswer) or not attempt.raw:
            continue
        try:
            record = json.loads(attempt.raw)
        except ValueError:
            continue
        for detail in attempt.error.errors:
            found, value = _at(record, detail.path)
            if found:
                banned.setdefault(detail.path, set()).add(json.dumps(value))
    return banned


def _at(record: Any, path: str) -> tuple[bool, Any]:
    node = record
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", path):
        if part.startswith("["):
            index = int(part[1:-1])
            if not isinstance(node, list) or index >= len(node):
                return False, None
            node = node[index]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return False, None
    return bool(path), node
