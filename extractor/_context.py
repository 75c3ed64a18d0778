"""How much of a document one request can carry: known per model, settable, learned.

A model's context window is counted in tokens: the one the caller gives
(`context_tokens=`), else the one a provider's "context length" error stated, else a
known figure for the model (`KNOWN`, or the provider's own for the embedded model).
What the prompt, schema, worked examples and answer take is set aside, and the rest is
turned into characters at a conservative `CHARS_PER_TOKEN`. A provider that refused a
document without saying its limit leaves a ceiling in characters instead: half of what
it refused. Documents longer than the budget go through chunks (`extractor._long`).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

from extractor._errors import APIStatusError, DocumentTooLong

if TYPE_CHECKING:
    from extractor._conversation import Plan
    from extractor._providers import Endpoint

__all__ = [
    "CHARS_PER_TOKEN",
    "KNOWN",
    "budget_chars",
    "context_tokens",
    "learn",
    "too_long",
]

#: Characters per token assumed when sizing chunks: lower than English prose (about 4)
#: so that digits, codes and other scripts still fit.
CHARS_PER_TOKEN: Final = 3.0
#: Context windows in tokens of models people use, by the start of the model's name
#: (after any `vendor/` prefix, lower case). A model not listed is learned from its errors.
KNOWN: Final[Mapping[str, int]] = {
    "mistral-large": 131_072,
    "mistral-medium": 131_072,
    "mistral-small": 32_768,
    "open-mistral-nemo": 131_072,
    "mistral-nemo": 131_072,
    "gpt-4o": 128_000,
    "gpt-4.1": 1_047_576,
    "gpt-4-turbo": 128_000,
    "o3": 200_000,
    "o4-mini": 200_000,
}
#: Tokens kept for the answer when the call sets no `max_completion_tokens`: a quarter
#: of the context, at most this many.
ANSWER_TOKENS: Final = 4_096
#: The system prompt and message framing, in characters, beside the schema and examples.
PROMPT_CHARS: Final = 1_500

# (base URL, model) → tokens a provider's error stated, or characters it refused
_stated: dict[tuple[str, str], int] = {}
_ceilings: dict[tuple[str, str], int] = {}
_lock = threading.Lock()

_TOO_LONG: Final = re.compile(
    r"context[ _]length|maximum context|context window|too many tokens|prompt is too long"
    r"|too long for the (?:local )?model",
    re.I,
)
_STATED: Final = re.compile(
    r"(?:maximum context length|context length|context window|context size)"
    r"(?: is| of|:)?\s*(?:only\s*)?(\d[\d,]*)\s*tokens",
    re.I,
)


def too_long(exc: BaseException) -> bool:
    """Whether a provider refused the request because the prompt exceeds the context."""
    if isinstance(exc, DocumentTooLong):
        return True
    if not isinstance(exc, APIStatusError):
        return False
    return exc.status == 413 or (exc.status in (400, 422) and bool(_TOO_LONG.search(exc.body)))


def context_tokens(endpoint: Endpoint, given: int | None = None) -> int | None:
    """The context window of `endpoint`'s model in tokens, or None when nobody knows it."""
    if given is not None:
        return given
    key = (endpoint.base_url, endpoint.model)
    stated = _stated.get(key)
    if stated is not None:
        return stated
    if endpoint.provider.context_tokens is not None:
        return endpoint.provider.context_tokens
    name = endpoint.model.rsplit("/", 1)[-1].lower()
    for prefix, tokens in KNOWN.items():
        if name.startswith(prefix):
            return tokens
    return None


def budget_chars(plan: Plan) -> int | None:
    """Characters of document one request of `plan` can carry, or None: no known limit."""
    endpoint = plan.endpoint
    tokens = context_tokens(endpoint, plan.context_tokens)
    ceiling = _ceilings.get((endpoint.base_url, endpoint.model))
    if tokens is None:
        return ceiling
    answer = plan.params.get("max_completion_tokens") or min(ANSWER_TOKENS, tokens // 4)
    taken = PROMPT_CHARS + plan.schema.size + len(plan.instructions or "")
    if plan.examples:
        taken += sum(len(text) + len(json.dumps(record)) for text, record in plan.examples)
    room = int((tokens - answer) * CHARS_PER_TOKEN) - taken
    budget = max(room, 500)  # a schema that leaves no room still gets small chunks
    return budget if ceiling is None else min(budget, ceiling)


def learn(plan: Plan, exc: BaseException) -> int:
    """Remember what a "context length" refusal of `plan`'s document says about the model.

    Returns the characters one chunk of that document may have from now on: fewer than
    it has. A window the refusal states is kept (unless the caller gave one); a refusal
    that states none, or the one already used, means the estimate was too generous for
    this kind of text: the model's ceiling becomes half of what it refused.
    """
    key = (plan.endpoint.base_url, plan.endpoint.model)
    tokens = _stated_tokens(exc)
    news = False
    with _lock:
        if tokens is not None and plan.context_tokens is None and _stated.get(key) != tokens:
            _stated[key] = tokens
            news = True
    if news:
        budget = budget_chars(plan)
        if budget is not None and budget < len(plan.document):
            return budget
    half = max(len(plan.document) // 2, 1)
    with _lock:
        _ceilings[key] = min(_ceilings.get(key, half), half)
        return _ceilings[key]


def _stated_tokens(exc: BaseException) -> int | None:
    """The context window a refusal states, if it does."""
    limit = getattr(exc, "limit_tokens", None)
    if isinstance(limit, int):
        return limit
    cause = exc.__cause__ if exc.__cause__ is not None else exc
    body = cause.body if isinstance(cause, APIStatusError) else str(cause)
    stated = _STATED.search(body)
    return int(stated.group(1).replace(",", "")) if stated else None


def forget() -> None:
    """Drop everything learned (for tests, and after a model's context grew)."""
    with _lock:
        _stated.clear()
        _ceilings.clear()
