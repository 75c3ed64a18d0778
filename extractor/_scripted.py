"""`ScriptedBackend`: answers written in advance, in process, for unit tests.

Code that calls extractor can be tested without a server or a model:

    from extractor import Client
    from extractor.testing import ScriptedBackend

    backend = ScriptedBackend({"name": "Ann"}, '{"name": "Bob"}')
    client = Client("test/model", backend=backend)
    assert client.extract(Person, "...").name == "Ann"
    assert backend.requests[0].mode == "json_schema"

Each request takes the next item: a dict or list (sent as its JSON), a string (the
answer's text, valid or not: the reask loop sees it as it would a model's), an `Answer`
of `extractor.backend` (finish reason and usage included), or an exception to raise
(`APIStatusError(429, ...)`, say). Every request is kept in `requests`, typed: mode,
messages, schema, parameters. Streams yield the text in a few pieces, then the answer.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections import deque
from collections.abc import AsyncIterator, Iterator
from typing import Any, Final

from extractor._errors import APIStatusError
from extractor._modes import Answer
from extractor._result import Usage
from extractor.backend import Request, StreamItem

__all__ = ["ScriptedBackend"]

#: The usage a scripted answer reports unless it is an `Answer` with its own.
SCRIPTED_USAGE: Final = Usage(10, 5, 15)
_PIECES: Final = 4


class ScriptedBackend:
    """A backend that answers from a script, first in, first out, and records requests."""

    def __init__(self, *items: Any) -> None:
        self._script: deque[Any] = deque(items)
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        #: Every request received, in order.
        self.requests: list[Request] = []

    def script(self, *items: Any) -> None:
        """Queue more answers."""
        with self._lock:
            self._script.extend(items)

    @property
    def pending(self) -> int:
        """How many scripted answers are left."""
        return len(self._script)

    def complete(self, request: Request) -> Answer:
        with self._lock:
            self.requests.append(request)
            if not self._script:
                raise APIStatusError(
                    500,
                    "ScriptedBackend: no scripted answer left for this request (script "
                    "them: Client('test/model', backend=ScriptedBackend(answer, ...)))",
                )
            item = self._script.popleft()
            number = next(self._ids)
        if isinstance(item, BaseException):
            raise item
        if isinstance(item, Answer):
            return item
        text = item if isinstance(item, str) else json.dumps(item, ensure_ascii=False)
        return Answer(text, "stop", None, SCRIPTED_USAGE, f"scripted-{number}")

    async def acomplete(self, request: Request) -> Answer:
        return self.complete(request)

    def stream(self, request: Request) -> Iterator[StreamItem]:
        answer = self.complete(request)
        yield ""
        yield from _pieces(answer.text or "")
        yield answer

    async def astream(self, request: Request) -> AsyncIterator[StreamItem]:
        for item in self.stream(request):
            yield item

    async def aclose(self) -> None:
        """Nothing to release."""


def _pieces(text: str) -> Iterator[str]:
    """The text as it would grow in a stream: a few longer and longer prefixes."""
    step = max(1, len(text) // _PIECES)
    for end in range(step, len(text), step):
        yield text[:end]
    if text:
        yield text
