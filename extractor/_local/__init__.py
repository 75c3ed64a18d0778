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
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

from extractor._errors import InvalidAnswer
from extractor._local.engine import load_engine
from extractor._local.grounded import GroundedExtractor, bounded_schema
from extractor._local.weights import model_path
from extractor._modes import Answer
from extractor._result import Usage

if TYPE_CHECKING:
    from extractor._result import Attempt
    from extractor.backend import Request

__all__ = ["answer"]

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


def answer(request: Request) -> Answer:
    """Answer one request in process (needs the local extra)."""
    engine = load_engine(model_path(request.endpoint.model))
    params = request.params
    limit = int(
        params.get("max_tokens") or params.get("max_completion_tokens") or DEFAULT_MAX_TOKENS
    )
    if request.mode == "grounded":
        extractor = GroundedExtractor(
            engine,
            request.schema.schema,
            request.document,
            banned=_rejected(request.attempts),
            max_tokens=limit,
            examples=request.examples,
        )
        choice = extractor.run()
        text = json.dumps(choice.record, ensure_ascii=False)
        usage = Usage(
            extractor.prompt_tokens,
            extractor.completion_tokens,
            extractor.prompt_tokens + extractor.completion_tokens,
        )
        return Answer(text, "stop", None, usage, f"local-{next(_ids)}", spans=choice.spans)
    sampling = {_SAMPLING[k]: v for k, v in params.items() if k in _SAMPLING}
    sampling.setdefault("temperature", 0.0)
    prompt = engine.tokenize(_render(request.messages), bos=True)
    with engine.lock:
        text, finish, completion_tokens = engine.generate(
            prompt, bounded_schema(request.schema.schema), max_tokens=limit, **sampling
        )
    usage = Usage(len(prompt), completion_tokens, len(prompt) + completion_tokens)
    return Answer(text, finish, None, usage, f"local-{next(_ids)}")


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
