"""Every error `extractor` raises, in one tree.

```
ExtractorError
├── ConfigurationError        a mistake in how the call was set up: fix the call
│   ├── ParameterError        a sampling parameter out of range (names the parameter)
│   └── UsageError            a mistake on the command line
├── DatasetError              an evaluation dataset that cannot be used (file and line)
├── InputError                a document that cannot be read (says why, and what to do)
├── SchemaError               a target no dialect can express (names the field)
├── APIError                  the provider could not be reached, or said no
│   ├── APIConnectionError    timeouts, refused or dropped connections
│   │   └── APITimeoutError
│   ├── APIStatusError        an HTTP error status (or an error object in a 200 body)
│   └── MalformedResponse     a 200 body that is not a chat completion (names the field)
├── AttemptError              one answer that could not become a record
│   ├── InvalidAnswer         not JSON, or JSON that breaks the schema: re-asked
│   ├── TruncatedAnswer       cut off (token limit, or ends mid-value): re-asked
│   └── Refusal               the model declined: not re-asked
└── RetriesExhausted          every attempt failed; carries all of them
```

Backend exceptions (httpx, jsonschema, pydantic) are translated at the boundary with
`raise ... from`, so callers only ever catch these.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from extractor._result import Attempt

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIStatusError",
    "APITimeoutError",
    "AttemptError",
    "ConfigurationError",
    "DatasetError",
    "DocumentTooLong",
    "ErrorDetail",
    "ExtractorError",
    "InputError",
    "InvalidAnswer",
    "MalformedResponse",
    "ParameterError",
    "Refusal",
    "RetriesExhausted",
    "SchemaError",
    "TruncatedAnswer",
    "UsageError",
    "json_kind",
    "with_article",
]

_SECRET_HEADERS = frozenset({"authorization", "x-api-key", "api-key", "cookie", "set-cookie"})


class ExtractorError(Exception):
    """Base class for every error raised by `extractor`."""


class ConfigurationError(ExtractorError):
    """The call is set up wrongly (unknown provider, missing key, bad option)."""


class UsageError(ConfigurationError):
    """A mistake on the command line; reported in one line, exit status 2."""


class InputError(ExtractorError):
    """A document that cannot be read: not text, encrypted, broken, a scan, too large."""


class DocumentTooLong(InputError):
    """The document does not fit the model's context window.

    `extract`, `extract_result` and batch jobs do not raise it: they split the document
    into chunks and merge what each gives (`extract_long`). A stream cannot, so it raises
    it; so does a chunk that still does not fit. `limit_tokens` is the window when the
    provider said it.
    """

    def __init__(self, message: str, *, limit_tokens: int | None = None) -> None:
        super().__init__(message)
        self.limit_tokens = limit_tokens


class DatasetError(ExtractorError, ValueError):
    """An evaluation dataset or results file that cannot be used (names the file and line)."""


class ParameterError(ConfigurationError):
    """A request parameter is out of range; raised before any request is sent."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"parameter {name!r}: {message}")
        self.name = name


class SchemaError(ExtractorError):
    """The target cannot be expressed in the chosen schema dialect."""

    def __init__(self, message: str, *, path: str = "") -> None:
        super().__init__(f"field {path!r}: {message}" if path else message)
        self.path = path
        #: What is wrong, without the path.
        self.reason = message


class APIError(ExtractorError):
    """The provider could not be reached, or answered with an error."""


class APIConnectionError(APIError):
    """No usable HTTP response: connection refused or dropped, or a broken body.

    `retryable` is False where the error itself says trying again cannot help (a body
    over the size cap, the extraction's deadline spent); what else is retried is the
    retry policy's decision (`extractor._retry`).
    """

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class APITimeoutError(APIConnectionError):
    """A deadline passed: one request's `timeout`, or the extraction's `deadline`."""


class APIStatusError(APIError):
    """The provider answered with an error status (or an error object in a 200 body).

    `body` and `headers` are kept for diagnosis; secret headers are masked.
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        body: str = "",
        headers: Mapping[str, str] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.body = body
        #: Seconds the server asked us to wait before trying again, if it said.
        self.retry_after = retry_after
        self.headers = {
            k.lower(): ("***" if k.lower() in _SECRET_HEADERS else v)
            for k, v in (headers or {}).items()
        }

    @classmethod
    def from_error_object(
        cls,
        error: Any,
        *,
        status: int | None = None,
        body: str = "",
        headers: Mapping[str, str] | None = None,
        retry_after: float | None = None,
    ) -> APIStatusError:
        """Build from an OpenAI-style `{"error": {...}}` value; its `code` may set the status."""
        code = error.get("code") if isinstance(error, dict) else None
        if status is None:
            status = code if isinstance(code, int) and 400 <= code < 600 else 502
        message = error.get("message") if isinstance(error, dict) else error
        return cls(
            status,
            str(message or error or "no message"),
            body=body,
            headers=headers,
            retry_after=retry_after,
        )


class MalformedResponse(APIError):
    """The server answered 200, but not with a chat completion: a field is missing or mistyped.

    `problem` names the field and what is wrong with it; `body` keeps the start of the
    response (keys masked) for diagnosis. The server broke the format, not the model,
    so the model is not asked again.
    """

    def __init__(
        self,
        problem: str,
        *,
        body: str = "",
        subject: str = "the server's response",
        expected: str = "chat.completion",
    ) -> None:
        super().__init__(f"{subject} is not a {expected}: {problem}")
        self.problem = problem
        self.body = body


@dataclass(frozen=True)
class ErrorDetail:
    """One problem with an answer: where (a dotted path, empty for the root) and what."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path or '(root)'}: {self.message}"


class AttemptError(ExtractorError):
    """An answer that could not become a record."""

    #: Whether asking again, with the errors, may help.
    reaskable = True

    def __init__(self, message: str, *, raw: str | None = None) -> None:
        super().__init__(message)
        self.raw = raw


class InvalidAnswer(AttemptError):
    """The answer is not JSON, or breaks the schema; `errors` says where and how."""

    def __init__(self, errors: Sequence[ErrorDetail], *, raw: str | None = None) -> None:
        shown = "; ".join(str(e) for e in errors[:5])
        more = f" (+{len(errors) - 5} more)" if len(errors) > 5 else ""
        super().__init__(f"invalid answer: {shown}{more}", raw=raw)
        self.errors = tuple(errors)


class TruncatedAnswer(AttemptError):
    """The answer was cut off: at the token limit (`finish_reason: length`), or mid-value.

    `detail` says where, when the text itself shows the cut (it ends inside a value).
    """

    def __init__(self, *, raw: str | None = None, detail: str | None = None) -> None:
        message = (
            f"the answer was cut off: {detail}"
            if detail
            else "the answer was cut off at the token limit; raise max_completion_tokens"
        )
        super().__init__(message, raw=raw)
        self.detail = detail


class Refusal(AttemptError):
    """The model declined to answer; asking again with the same input will not help."""

    reaskable = False

    def __init__(self, reason: str) -> None:
        super().__init__(f"the model refused: {reason}", raw=None)
        self.reason = reason


class RetriesExhausted(ExtractorError):
    """Every attempt failed; `attempts` holds each answer and what was wrong with it."""

    def __init__(self, attempts: Sequence[Attempt], *, usage: Any = None) -> None:
        last = attempts[-1].error if attempts else None
        super().__init__(f"no valid record after {len(attempts)} attempt(s); last: {last}")
        self.attempts = tuple(attempts)
        self.usage = usage


# --- message helpers ---------------------------------------------------------------------

#: Words that start with a "u" said as "you": "a uint8", not "an uint8".
_U_AS_YOU: Final = ("uni", "uint", "use", "usu", "uti", "uuid", "uri", "url")


def with_article(noun: str) -> str:
    """`noun` after the article it is said with, for messages: "an int", "a str"."""
    sound = noun.lower()
    vowel = sound[:1] in ("a", "e", "i", "o") or (
        sound[:1] == "u" and not sound.startswith(_U_AS_YOU)
    )
    return f"{'an' if vowel else 'a'} {noun}"


def json_kind(value: Any) -> str:
    """What a decoded JSON value is, in JSON's words: "an object", "a string", "null"."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, (list, tuple)):
        return "an array"
    return with_article(type(value).__name__)
