"""Provider batch APIs for `extractor.testing.ChatServer`: OpenAI's and Mistral's shapes.

Two real APIs are served from one in-memory store of files, told apart by path:

- OpenAI's Files and Batch APIs: ``POST /v1/files`` (multipart, ``purpose=batch``),
  ``GET /v1/files`` (a list page that also carries Mistral's ``total``),
  ``GET /v1/files/{id}``, ``GET /v1/files/{id}/content``, ``DELETE /v1/files/{id}``,
  ``POST /v1/batches``, ``GET /v1/batches`` (newest first, ``limit``/``after``),
  ``GET /v1/batches/{id}`` and ``POST /v1/batches/{id}/cancel``. Input lines are
  ``{"custom_id", "method": "POST", "url": "/v1/chat/completions", "body"}``.
- Mistral's Batch API: the same files endpoints, ``POST /v1/batch/jobs``,
  ``GET /v1/batch/jobs`` (filters and pages), ``GET /v1/batch/jobs/{id}`` and
  ``POST /v1/batch/jobs/{id}/cancel``. Input lines are ``{"custom_id", "body"}``; the
  model is on the job.

Each request line is answered the way the online chat endpoint answers its body: the
store hands the line to a callback (`ChatServer` passes its script queue and handler),
so a test scripts a batch exactly as it scripts online calls. How each batch plays out
(how many polls it takes, whether it expires, fails or is cancelled) is a `BatchOutcome`.

This module knows nothing of `extractor.testing`; the server gives it two callbacks.
"""

from __future__ import annotations

import itertools
import json
import random
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal, TypeAlias
from urllib.parse import parse_qs, urlsplit

__all__ = [
    "CHAT_ENDPOINT",
    "MISTRAL_MAX_LINES",
    "OPENAI_MAX_BYTES",
    "OPENAI_MAX_LINES",
    "Api",
    "BatchOutcome",
    "BatchReply",
    "BatchStore",
    "BatchSubmission",
    "LineAnswer",
    "LineRequest",
]

Api: TypeAlias = Literal["openai", "mistral"]
"""Which provider's batch API a batch came in through."""

OPENAI_MAX_LINES = 50_000
"""Requests one OpenAI batch input file may hold (the Batch API reference)."""

OPENAI_MAX_BYTES = 200 * 1024 * 1024
"""Bytes one OpenAI batch input file may hold: 200 MB (209,715,200 in OpenAI's message)."""

MISTRAL_MAX_LINES = 1_000_000
"""Requests one Mistral batch job may hold (Mistral's batch guide: 1 million pending)."""

CHAT_ENDPOINT = "/v1/chat/completions"
"""The one endpoint these batches run; the online path ChatServer serves."""

_COMPLETION_WINDOW_SECONDS = 24 * 3600
_OPENAI_ENDPOINTS = frozenset(
    {
        "/v1/responses",
        "/v1/chat/completions",
        "/v1/embeddings",
        "/v1/completions",
        "/v1/moderations",
        "/v1/images/generations",
        "/v1/images/edits",
        "/v1/videos",
    }
)
_MISTRAL_ENDPOINTS = frozenset(
    {
        "/v1/chat/completions",
        "/v1/embeddings",
        "/v1/fim/completions",
        "/v1/moderations",
        "/v1/chat/moderations",
        "/v1/ocr",
        "/v1/classifications",
        "/v1/chat/classifications",
        "/v1/conversations",
        "/v1/audio/transcriptions",
    }
)
# OpenAI's purposes and Mistral's, for the shared upload endpoint.
_UPLOAD_PURPOSES = frozenset(
    {"assistants", "batch", "fine-tune", "vision", "user_data", "evals", "ocr", "audio"}
)
_TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})
_MISTRAL_STATUS = {
    "validating": "QUEUED",
    "in_progress": "RUNNING",
    "finalizing": "RUNNING",
    "completed": "SUCCESS",
    "failed": "FAILED",
    "expired": "TIMEOUT_EXCEEDED",
    "cancelling": "CANCELLATION_REQUESTED",
    "cancelled": "CANCELLED",
}
_MISTRAL_LIST_KEYS = frozenset(
    {
        "page",
        "page_size",
        "model",
        "agent_id",
        "metadata",
        "created_after",
        "created_by_me",
        "status",
        "order_by",
    }
)
_MAX_PROBLEMS = 1000  # validation errors kept per batch; a file of bad lines stays readable
_EXPIRED_MESSAGE = "This request could not be executed before the completion window expired."
_CANCELLED_MESSAGE = "This request was not executed because the batch was cancelled."


def _now() -> int:
    return int(time.time())


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# ---------------------------------------------------------------------------
# Public scripting types
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchOutcome:
    """How one batch (an OpenAI batch or a Mistral batch job) plays out.

    A batch moves one step each time its status is fetched (``GET /v1/batches/{id}`` or
    ``GET /v1/batch/jobs/{id}``; the list endpoints show it without moving it). It is
    created ``validating`` (Mistral: ``QUEUED``). The next ``polls`` fetches see it at
    work: ``in_progress`` (Mistral: ``RUNNING``), the last of them ``finalizing`` when
    ``polls`` is 2 or more (OpenAI only). The fetch after those sees it finished:
    ``completed`` (``SUCCESS``). The default, ``BatchOutcome()``, completes on the first
    fetch after creation.

    Request lines are answered in input order while the batch is at work:
    ``lines_per_poll`` more at each ``in_progress`` fetch (None: every line at the
    first), all that remain at ``finalizing`` and at the finishing fetch. Each answer
    goes to the output file (status 200) or the error file (anything else).

    - ``expire_after``: only this many lines are ever answered; if any remain at the
      finishing fetch, the batch ends ``expired`` (``TIMEOUT_EXCEEDED``) with the
      answered lines' results kept: a partial result.
    - ``fail``: validation fails with this message; the batch stays ``validating`` for
      ``polls`` fetches, then ends ``failed`` (``FAILED``) with ``errors`` (code
      ``fail_code``) and no files. A file that breaks the limits or has a malformed line
      fails the same way on its own, with the errors the API reports.
    - Cancel (``POST .../cancel``): the batch is ``cancelling``
      (``CANCELLATION_REQUESTED``) for ``cancel_polls`` fetches, then ``cancelled`` with
      whatever was answered before. A Mistral job cancelled while still ``QUEUED`` is
      ``CANCELLED`` at once, as Mistral's API does.
    - ``unrun_in_error_file``: whether lines never answered (expired or cancelled) get an
      error-file line (``response: null``, error code ``batch_expired`` or
      ``batch_cancelled``). None: OpenAI's way (yes, as its Batch guide documents for
      expiry) for OpenAI batches, no for Mistral jobs (which only count them).
    - ``shuffle``: write output and error lines in a shuffled (seeded, repeatable) order,
      since neither provider promises input order.

    Scripted chat items are answered without their pacing: a `Delay` does not sleep in a
    batch, and `Drop` or `Heartbeat` become an error line with code ``server_error``.
    """

    polls: int = 0
    lines_per_poll: int | None = None
    expire_after: int | None = None
    fail: str | None = None
    fail_code: str = "invalid_request"
    cancel_polls: int = 0
    unrun_in_error_file: bool | None = None
    shuffle: bool = False

    def __post_init__(self) -> None:
        for name in ("polls", "cancel_polls"):
            value = getattr(self, name)
            if not _is_count(value) or value < 0:
                raise ValueError(f"BatchOutcome {name} must be an int >= 0, got {value!r}")
        if self.lines_per_poll is not None and (
            not _is_count(self.lines_per_poll) or self.lines_per_poll < 1
        ):
            raise ValueError(
                f"BatchOutcome lines_per_poll must be None or an int >= 1, "
                f"got {self.lines_per_poll!r}"
            )
        if self.expire_after is not None and (
            not _is_count(self.expire_after) or self.expire_after < 0
        ):
            raise ValueError(
                "BatchOutcome expire_after counts request lines answered before expiry: "
                f"None or an int >= 0, got {self.expire_after!r}"
            )
        if self.fail is not None and not isinstance(self.fail, str):
            raise ValueError(f"BatchOutcome fail must be a message or None, got {self.fail!r}")


@dataclass(frozen=True)
class BatchSubmission:
    """A new batch as a batch handler sees it, to choose its `BatchOutcome`.

    ``api`` is ``"openai"`` or ``"mistral"``; ``custom_ids`` lists the request lines in
    input order; ``errors`` holds the validation problems found in the input (the batch
    fails whatever outcome is chosen when there are any).
    """

    id: str
    api: Api
    endpoint: str
    model: str | None
    input_file_ids: tuple[str, ...]
    metadata: Mapping[str, Any] | None
    custom_ids: tuple[str, ...]
    errors: tuple[str, ...] = ()


@dataclass(frozen=True)
class LineRequest:
    """One request line handed to the server's line callback when the batch runs it.

    ``raw`` is the line's exact bytes in the input file; ``path`` the request's URL
    (OpenAI: the line's ``url``; Mistral: the job's endpoint); ``model`` the job's model
    (Mistral), for answers to a body that does not name one.
    """

    batch_id: str
    api: Api
    custom_id: str
    path: str
    raw: bytes
    body: dict[str, Any]
    model: str | None = None


@dataclass(frozen=True)
class LineAnswer:
    """What the online endpoint would have answered one line: a status and JSON body.

    ``status`` None means no HTTP answer at all (a dropped connection); ``error_code``
    and ``error_message`` then say why, for the line's ``error`` object.
    """

    status: int | None
    body: Any = None
    error_code: str | None = None
    error_message: str | None = None


@dataclass(frozen=True)
class BatchReply:
    """An HTTP response from the batch endpoints; ``body`` may be a view of a stored file."""

    status: int
    body: bytes | memoryview
    content_type: str = "application/json"
    headers: Mapping[str, str] = field(default_factory=dict)


# ---------------------------------------------------------------------------
# Stored files
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Blob:
    """Bytes ``data[start:end]``, kept as offsets so an upload is never copied."""

    data: bytes
    start: int
    end: int

    def __len__(self) -> int:
        return self.end - self.start

    def view(self) -> memoryview:
        return memoryview(self.data)[self.start : self.end]

    def count_lines(self) -> int:
        if not len(self):
            return 0
        newlines = self.data.count(b"\n", self.start, self.end)
        return newlines + (0 if self.data[self.end - 1] == 0x0A else 1)

    def lines(self) -> Iterator[tuple[int, int, int]]:
        """(1-based number, start, end) of each line, without its line ending."""
        at, number = self.start, 0
        while at < self.end:
            stop = self.data.find(b"\n", at, self.end)
            stop = self.end if stop < 0 else stop
            end = stop - 1 if stop > at and self.data[stop - 1] == 0x0D else stop
            number += 1
            yield number, at, end
            at = stop + 1


@dataclass(eq=False)
class _File:
    id: str
    filename: str
    purpose: str
    created_at: int
    blob: _Blob
    extra: dict[str, Any]

    def render(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "file",
            "bytes": len(self.blob),
            "created_at": self.created_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "expires_at": None,
            "status_details": None,
            **self.extra,
        }


# ---------------------------------------------------------------------------
# Batches
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Line:
    custom_id: str
    blob: _Blob
    start: int
    end: int
    url: str


@dataclass(frozen=True)
class _Problem:
    code: str
    message: str
    line: int | None = None
    param: str | None = None


@dataclass(eq=False)
class _Batch:
    api: Api
    id: str
    seq: int
    created_at: int
    endpoint: str
    input_file_ids: tuple[str, ...]
    model: str | None
    metadata: dict[str, Any] | None
    lines: list[_Line]
    problems: list[_Problem]
    outcome: BatchOutcome
    completion_window: str = "24h"
    timeout_hours: int = 24
    status: str = "validating"
    polls: int = 0
    cancel_seen: int = 0
    started: bool = False
    done: int = 0
    results: list[dict[str, Any]] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    times: dict[str, int] = field(default_factory=dict)
    output_file_id: str | None = None
    error_file_id: str | None = None
    usage: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(("input", "cached", "output", "reasoning"), 0)
    )
    lock: threading.Lock = field(default_factory=threading.Lock)


def _error(
    status: int,
    message: str,
    *,
    type_: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
    allow: str | None = None,
) -> BatchReply:
    payload = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    headers = {"Allow": allow} if allow else {}
    return BatchReply(status, json.dumps(payload).encode(), headers=headers)


def _ok(payload: Any) -> BatchReply:
    return BatchReply(200, json.dumps(payload).encode())


def _not_found(what: str, ident: str) -> BatchReply:
    return _error(404, f"No such {what}: {ident!r}", type_="invalid_request_error")


def _json_object(body: bytes) -> dict[str, Any] | BatchReply:
    try:
        parsed = json.loads(body) if body else None
    except (ValueError, UnicodeDecodeError) as exc:
        return _error(400, f"ChatServer: request body is not valid JSON ({exc})")
    if not isinstance(parsed, dict):
        return _error(400, "ChatServer: request body must be a JSON object")
    return parsed


def _metadata(value: object, *, limit: bool) -> dict[str, Any] | BatchReply | None:
    """Check ``metadata``: a string map (OpenAI: at most 16 keys of 64, values of 512)."""
    if value is None:
        return None
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        return _error(400, "Invalid 'metadata': expected an object of strings", param="metadata")
    if limit and (len(value) > 16 or any(len(k) > 64 or len(v) > 512 for k, v in value.items())):
        return _error(
            400,
            "Invalid 'metadata': at most 16 keys, keys up to 64 and values up to 512 characters",
            param="metadata",
        )
    return dict(value)


# ---------------------------------------------------------------------------
# multipart/form-data
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Part:
    name: str
    filename: str | None
    start: int
    end: int


_PARAM = re.compile(r';\s*([A-Za-z0-9_*-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;\s]*))')


def _params(header: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for match in _PARAM.finditer(header):
        quoted, bare = match.group(2), match.group(3)
        value = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else bare
        found[match.group(1).lower()] = value
    return found


def _multipart(content_type: str, body: bytes) -> dict[str, _Part] | str:
    """Parts of a form by name, as offsets into ``body``; a message when it is not one."""
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind != "multipart/form-data":
        return "ChatServer: uploads must be multipart/form-data"
    boundary = _params(content_type).get("boundary")
    if not boundary:
        return "ChatServer: multipart/form-data without a boundary"
    delimiter = b"--" + boundary.encode("latin-1")
    at = body.find(delimiter)
    if at < 0:
        return "ChatServer: multipart body does not contain its boundary"
    parts: dict[str, _Part] = {}
    while True:
        at += len(delimiter)
        if body[at : at + 2] == b"--":
            return parts
        if body[at : at + 2] != b"\r\n":
            return "ChatServer: malformed multipart body"
        head_end = body.find(b"\r\n\r\n", at + 2)
        if head_end < 0:
            return "ChatServer: malformed multipart part headers"
        head = body[at + 2 : head_end].decode("utf-8", "replace")
        start = head_end + 4
        end = body.find(b"\r\n" + delimiter, start)
        if end < 0:
            return "ChatServer: multipart body ends without its closing boundary"
        disposition = ""
        for header in head.split("\r\n"):
            name, _, value = header.partition(":")
            if name.strip().lower() == "content-disposition":
                disposition = value
        params = _params(disposition)
        if "name" in params:
            parts[params["name"]] = _Part(params["name"], params.get("filename"), start, end)
        at = end + 2


# ---------------------------------------------------------------------------
# The store
# ---------------------------------------------------------------------------


class BatchStore:
    """Files, OpenAI batches and Mistral batch jobs, shared by all of a server's threads.

    ``run_line`` answers one request line; ``choose`` picks the outcome of a new batch.
    Both are called without the store's lock held. The limits are read when a batch is
    created, so a test may change them on a running server.
    """

    def __init__(
        self,
        run_line: Callable[[LineRequest], LineAnswer],
        choose: Callable[[BatchSubmission], BatchOutcome],
        *,
        max_lines: int = OPENAI_MAX_LINES,
        max_bytes: int = OPENAI_MAX_BYTES,
        mistral_max_lines: int = MISTRAL_MAX_LINES,
    ) -> None:
        self.run_line = run_line
        self.choose = choose
        self.max_lines = max_lines
        self.max_bytes = max_bytes
        self.mistral_max_lines = mistral_max_lines
        self._lock = threading.Lock()  # guards the dicts; a batch's own lock guards its state
        self._files: dict[str, _File] = {}
        self._openai: dict[str, _Batch] = {}
        self._mistral: dict[str, _Batch] = {}
        self._seq = itertools.count(1)

    # -- inspection -----------------------------------------------------------

    def file_bytes(self, file_id: str) -> bytes | None:
        """A stored file's content (a copy), or None when there is no such file."""
        with self._lock:
            stored = self._files.get(file_id)
        return None if stored is None else bytes(stored.blob.view())

    # -- routing --------------------------------------------------------------

    def handle(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes
    ) -> BatchReply | None:
        """Answer a request to a files or batch path; None when the path is not one."""
        split = urlsplit(target)
        path = split.path.rstrip("/")
        if path.startswith("/v1/"):
            path = path[3:]
        parts = [part for part in path.split("/") if part]
        query = parse_qs(split.query, keep_blank_values=True)
        if parts[:1] == ["files"]:
            return self._files_route(method, parts[1:], query, headers, body)
        if parts[:1] == ["batches"]:
            return self._openai_route(method, parts[1:], query, body)
        if parts[:2] == ["batch", "jobs"]:
            return self._mistral_route(method, parts[2:], query, body)
        return None

    @staticmethod
    def _wrong_method(method: str, target: str, allow: str) -> BatchReply:
        message = f"ChatServer: method {method} not allowed on {target}"
        return _error(405, message, allow=allow)

    def _files_route(
        self,
        method: str,
        rest: list[str],
        query: dict[str, list[str]],
        headers: Mapping[str, str],
        body: bytes,
    ) -> BatchReply:
        if not rest:
            if method == "POST":
                return self._upload(headers.get("content-type", ""), body)
            if method == "GET":
                return self._file_list(query)
            return self._wrong_method(method, "/v1/files", "GET, POST")
        if len(rest) == 1:
            if method == "GET":
                return self._file_get(rest[0])
            if method == "DELETE":
                return self._file_delete(rest[0])
            return self._wrong_method(method, f"/v1/files/{rest[0]}", "GET, DELETE")
        if len(rest) == 2 and rest[1] == "content":
            if method == "GET":
                return self._file_content(rest[0])
            return self._wrong_method(method, f"/v1/files/{rest[0]}/content", "GET")
        return _error(404, f"ChatServer: unknown path /v1/files/{'/'.join(rest)}")

    def _openai_route(
        self, method: str, rest: list[str], query: dict[str, list[str]], body: bytes
    ) -> BatchReply:
        if not rest:
            if method == "POST":
                return self._openai_create(body)
            if method == "GET":
                return self._openai_list(query)
            return self._wrong_method(method, "/v1/batches", "GET, POST")
        if len(rest) == 1:
            if method == "GET":
                return self._poll(self._openai, rest[0], "batch")
            return self._wrong_method(method, f"/v1/batches/{rest[0]}", "GET")
        if len(rest) == 2 and rest[1] == "cancel":
            if method == "POST":
                return self._cancel(self._openai, rest[0], "batch")
            return self._wrong_method(method, f"/v1/batches/{rest[0]}/cancel", "POST")
        return _error(404, f"ChatServer: unknown path /v1/batches/{'/'.join(rest)}")

    def _mistral_route(
        self, method: str, rest: list[str], query: dict[str, list[str]], body: bytes
    ) -> BatchReply:
        if not rest:
            if method == "POST":
                return self._mistral_create(body)
            if method == "GET":
                return self._mistral_list(query)
            return self._wrong_method(method, "/v1/batch/jobs", "GET, POST")
        if len(rest) == 1:
            if method == "GET":
                return self._poll(self._mistral, rest[0], "batch job")
            return self._wrong_method(method, f"/v1/batch/jobs/{rest[0]}", "GET")
        if len(rest) == 2 and rest[1] == "cancel":
            if method == "POST":
                return self._cancel(self._mistral, rest[0], "batch job")
            return self._wrong_method(method, f"/v1/batch/jobs/{rest[0]}/cancel", "POST")
        return _error(404, f"ChatServer: unknown path /v1/batch/jobs/{'/'.join(rest)}")

    # -- files ------------------------------------------------------------------

    def _upload(self, content_type: str, body: bytes) -> BatchReply:
        parts = _multipart(content_type, body)
        if isinstance(parts, str):
            return _error(400, parts)
        upload = parts.get("file")
        if upload is None:
            return _error(400, "Missing required parameter: 'file'.", param="file")
        purpose_part = parts.get("purpose")
        if purpose_part is None:
            return _error(400, "Missing required parameter: 'purpose'.", param="purpose")
        purpose = body[purpose_part.start : purpose_part.end].decode("utf-8", "replace").strip()
        if purpose not in _UPLOAD_PURPOSES:
            allowed = ", ".join(sorted(_UPLOAD_PURPOSES))
            return _error(
                400, f"Invalid 'purpose' {purpose!r}: expected one of {allowed}", param="purpose"
            )
        blob = _Blob(body, upload.start, upload.end)
        # The upload endpoint is shared, so the file object carries Mistral's fields too.
        extra = {
            "sample_type": "batch_request" if purpose == "batch" else "instruct",
            "source": "upload",
            "num_lines": blob.count_lines(),
            "mimetype": "application/jsonl",
        }
        filename = upload.filename or "upload.jsonl"
        stored = self._store_file(f"file-{secrets.token_hex(12)}", filename, purpose, blob, extra)
        return _ok(stored.render())

    def _store_file(
        self, file_id: str, filename: str, purpose: str, blob: _Blob, extra: dict[str, Any]
    ) -> _File:
        stored = _File(file_id, filename, purpose, _now(), blob, extra)
        with self._lock:
            self._files[file_id] = stored
        return stored

    def _file_list(self, query: dict[str, list[str]]) -> BatchReply:
        """Files, newest first: OpenAI's list page and Mistral's ``total`` in one answer."""
        purpose = query.get("purpose", [None])[-1]
        order = query.get("order", ["desc"])[-1]
        if order not in ("asc", "desc"):
            return _error(400, f"Invalid 'order' {order!r}: 'asc' or 'desc'", param="order")
        limit_text = query.get("limit", ["10000"])[-1]
        try:
            limit = int(limit_text)
        except ValueError:
            limit = 0
        if not 1 <= limit <= 10_000:
            message = f"Invalid 'limit' {limit_text!r}: an integer from 1 to 10000"
            return _error(400, message, param="limit")
        with self._lock:
            files = [f for f in self._files.values() if purpose in (None, f.purpose)]
        if order == "desc":
            files.reverse()  # dicts keep insertion order: the store's is upload order
        after = query.get("after", [None])[-1]
        if after:
            ids = [f.id for f in files]
            if after not in ids:
                return _error(400, f"Invalid 'after': no file {after!r}", param="after")
            files = files[ids.index(after) + 1 :]
        data = [f.render() for f in files[:limit]]
        return _ok(
            {
                "object": "list",
                "data": data,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None,
                "has_more": len(files) > limit,
                "total": len(files),
            }
        )

    def _file_get(self, file_id: str) -> BatchReply:
        with self._lock:
            stored = self._files.get(file_id)
        return _not_found("File object", file_id) if stored is None else _ok(stored.render())

    def _file_delete(self, file_id: str) -> BatchReply:
        with self._lock:
            stored = self._files.pop(file_id, None)
        if stored is None:
            return _not_found("File object", file_id)
        return _ok({"id": file_id, "object": "file", "deleted": True})

    def _file_content(self, file_id: str) -> BatchReply:
        with self._lock:
            stored = self._files.get(file_id)
        if stored is None:
            return _not_found("File object", file_id)
        return BatchReply(200, stored.blob.view(), "application/octet-stream")

    def _input_file(self, file_id: object, param: str) -> _File | BatchReply:
        if not isinstance(file_id, str) or not file_id:
            return _error(400, f"Invalid '{param}': expected a file id", param=param)
        with self._lock:
            stored = self._files.get(file_id)
        if stored is None:
            return _not_found("File object", file_id)
        if stored.purpose != "batch":
            message = (
                f"Invalid '{param}': file {file_id} has purpose {stored.purpose!r}, not 'batch'"
            )
            return _error(400, message, param=param)
        return stored

    # -- creating batches ---------------------------------------------------------

    def _openai_create(self, body: bytes) -> BatchReply:
        request = _json_object(body)
        if isinstance(request, BatchReply):
            return request
        for name in ("input_file_id", "endpoint", "completion_window"):
            if name not in request:
                return _error(400, f"Missing required parameter: '{name}'.", param=name)
        endpoint = request["endpoint"]
        if endpoint not in _OPENAI_ENDPOINTS:
            return _error(400, f"Invalid 'endpoint': {endpoint!r}", param="endpoint")
        if endpoint != CHAT_ENDPOINT:
            message = f"ChatServer only runs {CHAT_ENDPOINT} batches, not {endpoint}"
            return _error(400, message, param="endpoint")
        if request["completion_window"] != "24h":
            message = f"Invalid 'completion_window': {request['completion_window']!r}; only '24h'"
            return _error(400, message, param="completion_window")
        metadata = _metadata(request.get("metadata"), limit=True)
        if isinstance(metadata, BatchReply):
            return metadata
        source = self._input_file(request["input_file_id"], "input_file_id")
        if isinstance(source, BatchReply):
            return source
        lines, problems, model = self._validate_openai(source.blob)
        batch_id = f"batch_{secrets.token_hex(12)}"
        return self._register(
            self._openai,
            batch_id,
            "openai",
            (source.id,),
            model,
            metadata,
            lines,
            problems,
            extra={"completion_window": "24h"},
        )

    def _mistral_create(self, body: bytes) -> BatchReply:
        request = _json_object(body)
        if isinstance(request, BatchReply):
            return request
        files = request.get("input_files")
        if files is None:
            if request.get("requests") is not None:
                return _error(400, "ChatServer serves file batches only; send 'input_files'")
            return _error(400, "Missing required parameter: 'input_files'.", param="input_files")
        if not isinstance(files, list) or not files:
            return _error(400, "Invalid 'input_files': expected a list of file ids")
        endpoint = request.get("endpoint")
        if endpoint is None:
            return _error(400, "Missing required parameter: 'endpoint'.", param="endpoint")
        if endpoint not in _MISTRAL_ENDPOINTS:
            return _error(400, f"Invalid 'endpoint': {endpoint!r}", param="endpoint")
        if endpoint != CHAT_ENDPOINT:
            message = f"ChatServer only runs {CHAT_ENDPOINT} batches, not {endpoint}"
            return _error(400, message, param="endpoint")
        model = request.get("model")
        if not isinstance(model, str) or not model:
            return _error(400, "Missing required parameter: 'model'.", param="model")
        hours = request.get("timeout_hours", 24)
        if not _is_count(hours) or not 1 <= hours <= 168:
            message = f"Invalid 'timeout_hours' {hours!r}: an integer from 1 to 168"
            return _error(400, message, param="timeout_hours")
        metadata = _metadata(request.get("metadata"), limit=False)
        if isinstance(metadata, BatchReply):
            return metadata
        sources: list[_File] = []
        for file_id in files:
            source = self._input_file(file_id, "input_files")
            if isinstance(source, BatchReply):
                return source
            sources.append(source)
        lines, problems = self._validate_mistral(sources)
        return self._register(
            self._mistral,
            str(uuid.uuid4()),
            "mistral",
            tuple(source.id for source in sources),
            model,
            metadata,
            lines,
            problems,
            extra={"timeout_hours": hours},
        )

    def _register(
        self,
        table: dict[str, _Batch],
        batch_id: str,
        api: Api,
        file_ids: tuple[str, ...],
        model: str | None,
        metadata: dict[str, Any] | None,
        lines: list[_Line],
        problems: list[_Problem],
        extra: dict[str, Any],
    ) -> BatchReply:
        submission = BatchSubmission(
            id=batch_id,
            api=api,
            endpoint=CHAT_ENDPOINT,
            model=model,
            input_file_ids=file_ids,
            metadata=metadata,
            custom_ids=tuple(line.custom_id for line in lines),
            errors=tuple(problem.message for problem in problems),
        )
        try:
            outcome: object = self.choose(submission)
        except Exception as exc:  # a broken batch handler must be loud
            return _error(500, f"ChatServer: batch handler raised {exc!r}", type_="server_error")
        if not isinstance(outcome, BatchOutcome):  # the handler is the test's own code
            message = f"ChatServer: batch handler returned {outcome!r}, not a BatchOutcome"
            return _error(500, message, type_="server_error")
        with self._lock:
            seq = next(self._seq)
        batch = _Batch(
            api=api,
            id=batch_id,
            seq=seq,
            created_at=_now(),
            endpoint=CHAT_ENDPOINT,
            input_file_ids=file_ids,
            model=model,
            metadata=metadata,
            lines=lines,
            problems=problems,
            outcome=outcome,
            **extra,
        )
        with batch.lock:
            rendered = self._render(batch)
            with self._lock:
                table[batch_id] = batch
        return _ok(rendered)

    # -- validating input files ---------------------------------------------------

    def _size_problems(self, blob: _Blob, max_lines: int, max_bytes: int | None) -> list[_Problem]:
        if max_bytes is not None and len(blob) > max_bytes:
            message = (
                f"The batch input file is larger than the {max_bytes} maximum. "
                "Please try again with a smaller batch."
            )
            return [_Problem("file_too_large", message)]
        count = blob.count_lines()
        if count == 0:
            return [_Problem("empty_file", "The batch input file is empty.")]
        if count > max_lines:
            message = (
                f"The batch input file has {count} requests; the maximum is {max_lines}. "
                "Please try again with a smaller batch."
            )
            return [_Problem("too_many_tasks", message)]
        return []

    def _validate_openai(self, blob: _Blob) -> tuple[list[_Line], list[_Problem], str | None]:
        problems = self._size_problems(blob, self.max_lines, self.max_bytes)
        if problems:
            return [], problems, None
        lines: list[_Line] = []
        seen: set[str] = set()
        model: str | None = None
        for number, start, end in blob.lines():
            if len(problems) >= _MAX_PROBLEMS:
                break
            record = _parse_line(blob.data[start:end])
            if record is None:
                problems.append(
                    _Problem(
                        "invalid_json_line", "This line is not parseable as valid JSON.", number
                    )
                )
                continue
            found = _check_openai_line(record, number, seen)
            if found:
                problems.extend(found)
                continue
            custom_id = record["custom_id"]
            line_model = record["body"]["model"]
            if model is None:
                model = line_model
            elif line_model != model:
                message = (
                    f"The provided model {line_model!r} does not match the batch's model "
                    f"{model!r}; a batch input file holds requests to one model only."
                )
                problems.append(_Problem("model_mismatch", message, number, "body.model"))
                continue
            seen.add(custom_id)
            lines.append(_Line(custom_id, blob, start, end, record["url"]))
        return (lines if not problems else []), problems, model

    def _validate_mistral(self, sources: Sequence[_File]) -> tuple[list[_Line], list[_Problem]]:
        problems: list[_Problem] = []
        total = sum(source.blob.count_lines() for source in sources)
        if total > self.mistral_max_lines:
            message = f"The batch has {total} requests; the maximum is {self.mistral_max_lines}."
            return [], [_Problem("too_many_requests", message)]
        lines: list[_Line] = []
        seen: set[str] = set()
        for source in sources:
            if not len(source.blob):
                message = f"The batch input file {source.id} is empty."
                problems.append(_Problem("empty_file", message))
            for number, start, end in source.blob.lines():
                if len(problems) >= _MAX_PROBLEMS:
                    break
                where = f"Line {number} of file {source.id}"
                record = _parse_line(source.blob.data[start:end])
                if record is None:
                    problems.append(
                        _Problem("invalid_json_line", f"{where}: not valid JSON", number)
                    )
                    continue
                custom_id = record.get("custom_id")
                if not isinstance(custom_id, str):
                    message = f"{where}: 'custom_id' must be a string"
                    problems.append(_Problem("invalid_request", message, number, "custom_id"))
                    continue
                if custom_id in seen:
                    message = f"{where}: duplicate custom_id {custom_id!r}"
                    problems.append(_Problem("duplicate_custom_id", message, number, "custom_id"))
                    continue
                if not isinstance(record.get("body"), dict):
                    message = f"{where}: 'body' must be an object"
                    problems.append(_Problem("invalid_request", message, number, "body"))
                    continue
                seen.add(custom_id)
                lines.append(_Line(custom_id, source.blob, start, end, CHAT_ENDPOINT))
        return (lines if not problems else []), problems

    # -- polling, running, finishing ------------------------------------------------

    def _find(self, table: dict[str, _Batch], batch_id: str) -> _Batch | None:
        with self._lock:
            return table.get(batch_id)

    def _poll(self, table: dict[str, _Batch], batch_id: str, what: str) -> BatchReply:
        batch = self._find(table, batch_id)
        if batch is None:
            return _not_found(what, batch_id)
        with batch.lock:
            self._advance(batch)
            return _ok(self._render(batch))

    def _cancel(self, table: dict[str, _Batch], batch_id: str, what: str) -> BatchReply:
        batch = self._find(table, batch_id)
        if batch is None:
            return _not_found(what, batch_id)
        with batch.lock:
            if batch.status in _TERMINAL:
                shown = self._status(batch)
                return _error(400, f"Cannot cancel a {what} with status '{shown}'.")
            if batch.status != "cancelling":
                if batch.api == "mistral" and not batch.started:
                    self._finish(batch, "cancelled")  # nothing has run: Mistral cancels at once
                else:
                    batch.status = "cancelling"
                    batch.times["cancelling_at"] = _now()
            return _ok(self._render(batch))

    def _advance(self, batch: _Batch) -> None:
        """One fetch's worth of progress (the caller holds the batch's lock)."""
        if batch.status in _TERMINAL:
            return
        batch.polls += 1
        outcome = batch.outcome
        if batch.status == "cancelling":
            batch.cancel_seen += 1
            if batch.cancel_seen > outcome.cancel_polls:
                self._finish(batch, "cancelled")
            return
        if batch.problems or outcome.fail is not None:
            if batch.polls > outcome.polls:
                self._finish(batch, "failed")
            return
        if not batch.started:
            batch.started = True
            batch.status = "in_progress"
            batch.times["in_progress_at"] = _now()
        if batch.polls > outcome.polls:
            self._run(batch, None)
            self._finish(batch, "expired" if batch.done < len(batch.lines) else "completed")
        elif batch.api == "openai" and outcome.polls >= 2 and batch.polls == outcome.polls:
            batch.status = "finalizing"
            batch.times["finalizing_at"] = _now()
            self._run(batch, None)
        else:
            self._run(batch, outcome.lines_per_poll)

    def _run(self, batch: _Batch, count: int | None) -> None:
        limit = len(batch.lines)
        if batch.outcome.expire_after is not None:
            limit = min(limit, batch.outcome.expire_after)
        target = limit if count is None else min(limit, batch.done + count)
        while batch.done < target:
            line = batch.lines[batch.done]
            batch.done += 1
            self._answer(batch, line, batch.done)

    def _answer(self, batch: _Batch, line: _Line, index: int) -> None:
        raw = line.blob.data[line.start : line.end]
        record = json.loads(raw)
        request = LineRequest(
            batch_id=batch.id,
            api=batch.api,
            custom_id=line.custom_id,
            path=line.url,
            raw=raw,
            body=record["body"],
            model=batch.model if batch.api == "mistral" else None,
        )
        try:
            answer = self.run_line(request)
        except Exception as exc:  # the server's callback should not raise; stay up if it does
            message = f"ChatServer: answering the line raised {exc!r}"
            answer = LineAnswer(500, {"error": {"message": message, "type": "server_error"}})
        output: dict[str, Any] = {"id": self._line_id(batch, index), "custom_id": line.custom_id}
        if answer.status is None:
            output["response"] = None
            output["error"] = {
                "code": answer.error_code or "server_error",
                "message": answer.error_message or "The request could not be completed.",
            }
            batch.failures.append(output)
            return
        response: dict[str, Any] = {"status_code": answer.status}
        if batch.api == "openai":
            response["request_id"] = f"req_{secrets.token_hex(16)}"
        response["body"] = answer.body
        output["response"] = response
        output["error"] = None
        if answer.status == 200:
            batch.results.append(output)
            _add_usage(batch.usage, answer.body)
        else:
            batch.failures.append(output)

    @staticmethod
    def _line_id(batch: _Batch, index: int) -> str:
        if batch.api == "openai":
            return f"batch_req_{secrets.token_hex(12)}"
        return f"batch-{batch.id[:8]}-{secrets.token_hex(4)}-{index - 1}"

    def _finish(self, batch: _Batch, status: str) -> None:
        now = _now()
        outcome = batch.outcome
        if status in ("expired", "cancelled"):
            report = outcome.unrun_in_error_file
            if report is None:
                report = batch.api == "openai"
            if report:
                code = "batch_expired" if status == "expired" else "batch_cancelled"
                message = _EXPIRED_MESSAGE if status == "expired" else _CANCELLED_MESSAGE
                for index in range(batch.done, len(batch.lines)):
                    batch.failures.append(
                        {
                            "id": self._line_id(batch, index + 1),
                            "custom_id": batch.lines[index].custom_id,
                            "response": None,
                            "error": {"code": code, "message": message},
                        }
                    )
        if status != "failed":
            batch.output_file_id = self._result_file(batch, batch.results, "output")
            batch.error_file_id = self._result_file(batch, batch.failures, "error")
        batch.status = status
        batch.times[f"{status}_at"] = now
        if status in ("completed", "expired"):
            batch.times.setdefault("finalizing_at", now)

    def _result_file(self, batch: _Batch, rows: list[dict[str, Any]], kind: str) -> str | None:
        if not rows:
            return None
        if batch.outcome.shuffle:
            rows = list(rows)
            random.Random(f"{batch.id}:{kind}").shuffle(rows)
        data = b"".join(json.dumps(row).encode() + b"\n" for row in rows)
        blob = _Blob(data, 0, len(data))
        if batch.api == "openai":
            return self._store_file(
                f"file-{secrets.token_hex(12)}",
                f"{batch.id}_{kind}.jsonl",
                "batch_output",
                blob,
                {},
            ).id
        extra = {
            "sample_type": "batch_result" if kind == "output" else "batch_error",
            "source": "mistral",
            "num_lines": len(rows),
            "mimetype": "application/jsonl",
        }
        file_id = str(uuid.uuid4())
        return self._store_file(file_id, f"{file_id}.jsonl", "batch", blob, extra).id

    # -- rendering --------------------------------------------------------------------

    @staticmethod
    def _status(batch: _Batch) -> str:
        return batch.status if batch.api == "openai" else _MISTRAL_STATUS[batch.status]

    def _render(self, batch: _Batch) -> dict[str, Any]:
        return self._openai_object(batch) if batch.api == "openai" else self._mistral_object(batch)

    @staticmethod
    def _failed(batch: _Batch) -> list[_Problem]:
        if batch.status != "failed":
            return []
        if batch.problems:
            return batch.problems
        outcome = batch.outcome
        return [_Problem(outcome.fail_code, outcome.fail or "The batch failed validation.")]

    def _openai_object(self, batch: _Batch) -> dict[str, Any]:
        """A Batch object; fields that are unset are left out, since the schema has no nulls."""
        counted = batch.started or batch.status == "cancelled"
        usage = batch.usage
        obj: dict[str, Any] = {
            "id": batch.id,
            "object": "batch",
            "endpoint": batch.endpoint,
        }
        if batch.model is not None:
            obj["model"] = batch.model
        problems = self._failed(batch)
        if problems:
            data = [
                {"code": p.code, "message": p.message, "param": p.param, "line": p.line}
                for p in problems
            ]
            obj["errors"] = {"object": "list", "data": data}
        obj.update(
            {
                "input_file_id": batch.input_file_ids[0],
                "completion_window": batch.completion_window,
                "status": batch.status,
                "created_at": batch.created_at,
                "expires_at": batch.created_at + _COMPLETION_WINDOW_SECONDS,
            }
        )
        if batch.output_file_id is not None:
            obj["output_file_id"] = batch.output_file_id
        if batch.error_file_id is not None:
            obj["error_file_id"] = batch.error_file_id
        for name in (
            "in_progress_at",
            "finalizing_at",
            "completed_at",
            "failed_at",
            "expired_at",
            "cancelling_at",
            "cancelled_at",
        ):
            if name in batch.times:
                obj[name] = batch.times[name]
        obj["request_counts"] = {
            "total": len(batch.lines) if counted else 0,
            "completed": len(batch.results),
            "failed": len(batch.failures),
        }
        obj["usage"] = {
            "input_tokens": usage["input"],
            "input_tokens_details": {"cached_tokens": usage["cached"]},
            "output_tokens": usage["output"],
            "output_tokens_details": {"reasoning_tokens": usage["reasoning"]},
            "total_tokens": usage["input"] + usage["output"],
        }
        obj["metadata"] = batch.metadata
        return obj

    def _mistral_object(self, batch: _Batch) -> dict[str, Any]:
        """A Mistral BatchJobOut: every field present, unset ones null, as Mistral sends."""
        counted = batch.started
        errors: list[dict[str, Any]] = []
        problems = self._failed(batch)
        if problems:
            errors = [{"message": p.message, "count": 1} for p in problems]
        else:
            tally: dict[str, int] = {}
            for row in batch.failures:
                response = row.get("response")
                if isinstance(response, dict):
                    key = f"HTTP Error, status code: {response.get('status_code')}"
                else:
                    key = str((row.get("error") or {}).get("message", "Request failed"))
                tally[key] = tally.get(key, 0) + 1
            errors = [{"message": key, "count": count} for key, count in tally.items()]
        finished = batch.status in _TERMINAL
        return {
            "id": batch.id,
            "object": "batch",
            "input_files": list(batch.input_file_ids),
            "metadata": batch.metadata,
            "endpoint": batch.endpoint,
            "model": batch.model,
            "agent_id": None,
            "output_file": batch.output_file_id,
            "error_file": batch.error_file_id,
            "errors": errors,
            "outputs": None,
            "status": _MISTRAL_STATUS[batch.status],
            "created_at": batch.created_at,
            "total_requests": len(batch.lines) if counted else 0,
            "completed_requests": len(batch.results) + len(batch.failures),
            "succeeded_requests": len(batch.results),
            "failed_requests": len(batch.failures),
            "started_at": batch.times.get("in_progress_at"),
            "completed_at": batch.times[f"{batch.status}_at"] if finished else None,
        }

    # -- listing ----------------------------------------------------------------------

    def _snapshot(self, table: dict[str, _Batch]) -> list[_Batch]:
        with self._lock:
            batches = list(table.values())
        return sorted(batches, key=lambda batch: batch.seq, reverse=True)

    def _openai_list(self, query: dict[str, list[str]]) -> BatchReply:
        limit_text = query.get("limit", ["20"])[-1]
        try:
            limit = int(limit_text)
        except ValueError:
            limit = 0
        if not 1 <= limit <= 100:
            message = f"Invalid 'limit' {limit_text!r}: an integer from 1 to 100"
            return _error(400, message, param="limit")
        batches = self._snapshot(self._openai)
        after = query.get("after", [None])[-1]
        if after:
            ids = [batch.id for batch in batches]
            if after not in ids:
                return _error(400, f"Invalid 'after': no batch {after!r}", param="after")
            batches = batches[ids.index(after) + 1 :]
        page = batches[:limit]
        data = []
        for batch in page:
            with batch.lock:
                data.append(self._render(batch))
        return _ok(
            {
                "object": "list",
                "data": data,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None,
                "has_more": len(batches) > limit,
            }
        )

    def _mistral_list(self, query: dict[str, list[str]]) -> BatchReply:
        numbers: dict[str, int] = {}
        for name, default, least in (("page", 0, 0), ("page_size", 100, 1)):
            text = query.get(name, [str(default)])[-1]
            try:
                numbers[name] = int(text)
            except ValueError:
                numbers[name] = -1
            if numbers[name] < least:
                return _error(400, f"Invalid '{name}' {text!r}", param=name)
        order = query.get("order_by", ["-created"])[-1]
        if order not in ("created", "-created"):
            return _error(400, f"Invalid 'order_by' {order!r}", param="order_by")
        statuses = {s for value in query.get("status", []) for s in value.split(",") if s}
        wanted = _mistral_metadata_filter(query)
        if isinstance(wanted, BatchReply):
            return wanted
        after: int | None = None
        if query.get("created_after"):
            text = query["created_after"][-1]
            try:
                moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
            except ValueError:
                return _error(400, f"Invalid 'created_after' {text!r}", param="created_after")
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=timezone.utc)
            after = int(moment.timestamp())
        model = query.get("model", [None])[-1]
        matching = []
        for batch in self._snapshot(self._mistral):
            with batch.lock:
                rendered = self._render(batch)
            if statuses and rendered["status"] not in statuses:
                continue
            if model and batch.model != model:
                continue
            if after is not None and batch.created_at < after:
                continue
            stored = batch.metadata or {}
            if any(str(stored.get(key)) != value or key not in stored for key, value in wanted):
                continue
            matching.append(rendered)
        if order == "created":
            matching.reverse()
        start = numbers["page"] * numbers["page_size"]
        page = matching[start : start + numbers["page_size"]]
        return _ok({"object": "list", "data": page, "total": len(matching)})


def _mistral_metadata_filter(query: dict[str, list[str]]) -> list[tuple[str, str]] | BatchReply:
    """Metadata to match: ``metadata`` as a JSON object, and any other key (``?k=v``)."""
    wanted: list[tuple[str, str]] = []
    for text in query.get("metadata", []):
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict):
            return _error(400, f"Invalid 'metadata' {text!r}: a JSON object", param="metadata")
        wanted.extend((str(key), str(value)) for key, value in parsed.items())
    for key, values in query.items():
        if key not in _MISTRAL_LIST_KEYS:
            wanted.extend((key, value) for value in values)
    return wanted


def _parse_line(raw: bytes) -> dict[str, Any] | None:
    try:
        record = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    return record if isinstance(record, dict) else None


def _check_openai_line(record: dict[str, Any], number: int, seen: set[str]) -> list[_Problem]:
    """What is wrong with one parsed OpenAI input line, by the codes the API reports."""

    def missing(name: str) -> _Problem:
        return _Problem(
            "missing_required_parameter", f"Missing required parameter: '{name}'.", number, name
        )

    custom_id = record.get("custom_id")
    if custom_id is None:
        return [missing("custom_id")]
    if not isinstance(custom_id, str):
        message = "Invalid 'custom_id': expected a string."
        return [_Problem("invalid_request", message, number, "custom_id")]
    if custom_id in seen:
        message = (
            "The custom_id for this request is a duplicate of another request. "
            "The custom_id parameter must be unique for each request in a batch."
        )
        return [_Problem("duplicate_custom_id", message, number, "custom_id")]
    method = record.get("method")
    if method is None:
        return [missing("method")]
    if method != "POST":
        message = f"Invalid 'method' {method!r}: only POST is supported."
        return [_Problem("invalid_request", message, number, "method")]
    url = record.get("url")
    if url is None:
        return [missing("url")]
    if url != CHAT_ENDPOINT:
        message = "The URL provided for this request does not match the batch endpoint."
        return [_Problem("url_mismatch", message, number, "url")]
    body = record.get("body")
    if body is None:
        return [missing("body")]
    if not isinstance(body, dict):
        return [_Problem("invalid_request", "Invalid 'body': expected an object.", number, "body")]
    if not isinstance(body.get("model"), str):
        return [missing("body.model")]
    return []


def _add_usage(total: dict[str, int], body: Any) -> None:
    usage = body.get("usage") if isinstance(body, dict) else None
    if not isinstance(usage, dict):
        return

    def number(source: Any, key: str) -> int:
        value = source.get(key) if isinstance(source, dict) else None
        return value if isinstance(value, int) and not isinstance(value, bool) else 0

    total["input"] += number(usage, "prompt_tokens")
    total["output"] += number(usage, "completion_tokens")
    total["cached"] += number(usage.get("prompt_tokens_details"), "cached_tokens")
    total["reasoning"] += number(usage.get("completion_tokens_details"), "reasoning_tokens")
