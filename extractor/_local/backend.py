"""`LocalBackend`: the embedded model as a backend like any other.

Importable without the `local` extra; the first request says how to install it when it
is missing. Async requests run in a worker thread (the model holds a lock of its own),
and a stream yields the whole answer at once: the model writes it in one piece.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

from extractor._errors import ConfigurationError
from extractor._modes import Answer
from extractor.backend import Request, StreamItem

__all__ = ["LocalBackend"]


class LocalBackend:
    """Answers requests with the model running in this process."""

    def complete(self, request: Request) -> Answer:
        try:
            import extractor._local as local  # here: it needs the optional extra
        except ImportError as exc:
            raise ConfigurationError(
                f"local models need the local extra ({exc.name} is missing): "
                'pip install "extractor[local]"'
            ) from None
        return local.answer(request)

    async def acomplete(self, request: Request) -> Answer:
        return await asyncio.to_thread(self.complete, request)

    def stream(self, request: Request) -> Iterator[StreamItem]:
        yield self.complete(request)

    async def astream(self, request: Request) -> AsyncIterator[StreamItem]:
        yield await self.acomplete(request)

    async def aclose(self) -> None:
        """Nothing to release: the model stays loaded for the process."""
