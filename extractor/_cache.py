"""A response cache: answers kept in one SQLite file, so that a rerun pays for nothing.

`Cached` is a backend wrapper, outermost in a client's stack (`Cached(Retrying(...))`):
a request whose answer is in the cache is answered from it without waiting for a rate
limit or sending anything; any other goes on, and its answer is kept once it came. The
key is everything that determines the answer: the provider, its base URL, and the exact
JSON body the request is sent as (model, messages, schema, every parameter), plus, for
an in-process model, the earlier attempts it steers away from. Never the API key.

A hit's `Usage` is `Usage(cached=1)`: no tokens, no cost, and counted, so results and
batch totals say how many answers the cache gave. Only answers that came back whole are
kept (not refusals, not answers cut off at the token limit): a rerun asks those again.

One file serves several processes at once: SQLite in WAL mode, each write one short
transaction, and a busy timeout so that a writer waits for another instead of failing.
The file holds answers to your documents: keep it where you would keep the output.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, Final

from extractor._errors import ConfigurationError
from extractor._modes import Answer, build_body
from extractor._result import Usage
from extractor.backend import Backend, Request, StreamItem

__all__ = ["Cached", "ResponseCache"]

#: Bumped when the key or the stored answer changes shape: old entries are then missed.
KEY_VERSION: Final = 1
#: Seconds a write waits for another process's write to end.
BUSY_TIMEOUT: Final = 30.0
#: Finish reasons of answers that are not kept (asked again next time).
UNKEPT: Final = frozenset({"length", "content_filter", "error"})

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS answers (
    key TEXT PRIMARY KEY, label TEXT NOT NULL, answer TEXT NOT NULL, created REAL NOT NULL
);
"""


class ResponseCache:
    """Answers by request key, in the SQLite file at `path` (made if missing).

    Safe to share between threads and processes. `hits` and `misses` count this
    object's lookups.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise ConfigurationError(f"the cache {self.path} is a folder; name a file")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise ConfigurationError(
                f"cannot use {self.path} as a response cache: {exc} "
                "(name a writable file, or leave the cache out)"
            ) from None
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(request: Request) -> str:
        """The request's key: what determines its answer, hashed; never the API key."""
        endpoint = request.endpoint
        body = build_body(
            request.mode,
            model=endpoint.model,
            messages=list(request.messages),
            schema=request.schema,
            dialect=endpoint.provider.dialect,
            params=request.params,
            strict=request.strict,
        )
        parts: dict[str, Any] = {
            "v": KEY_VERSION,
            "provider": endpoint.provider.name,
            "base_url": endpoint.base_url,
            "body": body,
        }
        if endpoint.provider.backend is not None:  # in process: attempts steer the decoder
            parts["document"] = request.document
            parts["attempts"] = [[a.raw, str(a.error)] for a in request.attempts]
        text = json.dumps(parts, ensure_ascii=False, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()

    def get(self, key: str) -> Answer | None:
        """The kept answer for `key`, as a hit (`Usage(cached=1)`), or None."""
        with self._lock:
            row = self._db.execute("SELECT answer FROM answers WHERE key = ?", (key,)).fetchone()
        if row is None:
            self.misses += 1
            return None
        self.hits += 1
        kept = json.loads(row[0])
        return Answer(
            text=kept["text"],
            finish_reason=kept["finish_reason"],
            refusal=kept["refusal"],
            usage=Usage(cached=1),
            response_id=kept["response_id"],
            tool_call_id=kept["tool_call_id"],
            spans=kept["spans"],
        )

    def put(self, key: str, label: str, answer: Answer) -> None:
        """Keep `answer` under `key`, unless it is not worth keeping (see the module doc)."""
        if answer.refusal is not None or answer.finish_reason in UNKEPT or answer.text is None:
            return
        kept = {
            "text": answer.text,
            "finish_reason": answer.finish_reason,
            "refusal": answer.refusal,
            "response_id": answer.response_id,
            "tool_call_id": answer.tool_call_id,
            "spans": answer.spans,
            "usage": {  # what it cost the first time, for the record
                "prompt_tokens": answer.usage.prompt_tokens,
                "completion_tokens": answer.usage.completion_tokens,
                "cost": answer.usage.cost,
            },
        }
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO answers (key, label, answer, created) VALUES (?, ?, ?, ?)",
                (key, label, json.dumps(kept, ensure_ascii=False), time.time()),
            )

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM answers").fetchone()[0])

    def close(self) -> None:
        """Close the file; safe to call twice."""
        with self._lock:
            self._db.close()

    def __repr__(self) -> str:
        return f"ResponseCache({str(self.path)!r})"


class Cached:
    """A backend answered from `cache` where it can, and kept in it otherwise."""

    def __init__(self, inner: Backend, cache: ResponseCache) -> None:
        self.inner = inner
        self.cache = cache

    def _look(self, request: Request) -> tuple[str, Answer | None]:
        key = self.cache.key(request)
        return key, self.cache.get(key)

    def _keep(self, key: str, request: Request, answer: Answer) -> Answer:
        self.cache.put(key, request.endpoint.label, answer)
        return answer

    def complete(self, request: Request) -> Answer:
        key, hit = self._look(request)
        return hit or self._keep(key, request, self.inner.complete(request))

    async def acomplete(self, request: Request) -> Answer:
        key, hit = self._look(request)
        return hit or self._keep(key, request, await self.inner.acomplete(request))

    def stream(self, request: Request) -> Iterator[StreamItem]:
        key, hit = self._look(request)
        if hit is not None:
            yield from _replayed(hit)
            return
        for item in self.inner.stream(request):
            yield self._keep(key, request, item) if isinstance(item, Answer) else item

    async def astream(self, request: Request) -> AsyncIterator[StreamItem]:
        key, hit = self._look(request)
        if hit is not None:
            for item in _replayed(hit):
                yield item
            return
        async for item in self.inner.astream(request):
            yield self._keep(key, request, item) if isinstance(item, Answer) else item

    async def aclose(self) -> None:
        await self.inner.aclose()


def _replayed(hit: Answer) -> Iterator[StreamItem]:
    """A kept answer as a stream: its whole text at once, then the answer."""
    if hit.text:
        yield hit.text
    yield hit
