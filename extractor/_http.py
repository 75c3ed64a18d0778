"""`HTTPBackend`: chat completions over HTTP, and the connection pools it draws on.

A request becomes a body in its mode's shape and the provider's dialect
(`modes.build_body`), goes out through `transport` (deadline, size cap, masked key) and
comes back as an `Answer` (`modes.decode`); a stream is read event by event
(`sse.ChunkAssembler`). No retries here: `backend.Retrying` wraps this.

Pools: one sync pool per route (a proxy, or direct), and per event loop one async pool
per route, closed as its loop shuts down, so any number of threads and loops can share
one backend.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from typing import Any

import httpx

from extractor._errors import ConfigurationError
from extractor._modes import Answer, build_body, decode
from extractor._pool import default_async_transport
from extractor._providers import Endpoint
from extractor._sse import ChunkAssembler
from extractor._transport import (
    aopen_stream,
    apost,
    aread_stream,
    open_stream,
    post,
    read_stream,
    sync_transport,
)
from extractor.backend import Request, StreamItem

__all__ = ["HTTPBackend", "Pools"]


class _LoopPools:
    """The async pools of one event loop, one per proxy (None: direct)."""

    def __init__(self) -> None:
        self.clients: dict[str | None, httpx.AsyncClient] = {}
        self.guards: list[AsyncGenerator[None, None]] = []


async def _closed_with_loop(client: httpx.AsyncClient) -> AsyncGenerator[None, None]:
    """Hold `client` open until the event loop finalizes this generator, then close it."""
    try:
        yield
    finally:
        await client.aclose()


class Pools:
    """httpx clients by route, sync ones shared, async ones one set per event loop.

    `transport` / `async_transport`, if given, replace httpx's own (and then no proxy is
    applied: the transport decides). An `async_transport` serves one loop at a time.
    """

    def __init__(
        self,
        *,
        timeout: float,
        transport: httpx.BaseTransport | None = None,
        async_transport: httpx.AsyncBaseTransport | None = None,
        max_connections: int = 100,
    ) -> None:
        self.timeout = timeout
        self.transport = transport
        self.async_transport = async_transport
        self.max_connections = max_connections
        self._sync: dict[str | None, httpx.Client] = {}
        self._async: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopPools] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()

    def sync(self, endpoint: Endpoint) -> httpx.Client:
        """The sync pool for `endpoint`'s route."""
        proxy = None if self.transport is not None else endpoint.proxy
        client = self._sync.get(proxy)
        if client is None:
            with self._lock:
                client = self._sync.get(proxy)
                if client is None:
                    # trust_env=False: the proxy is the one `resolve` chose, never httpx's
                    # own pick from the environment, so sync and async go the same way
                    client = httpx.Client(
                        transport=self.transport or sync_transport(proxy),
                        timeout=self.timeout,
                        follow_redirects=False,
                        trust_env=False,
                    )
                    self._sync[proxy] = client
        return client

    async def async_(self, endpoint: Endpoint) -> httpx.AsyncClient:
        """The running event loop's pool for `endpoint`'s route.

        Each loop gets its own, closed as the loop shuts down (`asyncio.run` finalizes
        async generators; `_closed_with_loop` is one), so calls from one `asyncio.run`
        after another leave no connection open, and threads each running their own loop
        never touch each other's connections.
        """
        loop = asyncio.get_running_loop()
        proxy = None if self.async_transport is not None else endpoint.proxy
        pools = self._async.get(loop)
        if pools is not None and proxy in pools.clients:
            return pools.clients[proxy]
        with self._lock:
            if self.async_transport is not None and any(
                other is not loop and not other.is_closed() for other in self._async
            ):
                raise ConfigurationError(
                    "this Client was given an async_transport, which serves one event loop, "
                    "and another loop is using it: give each thread its own Client, or "
                    "leave async_transport unset (then every loop gets its own pool)"
                )
            pools = self._async.setdefault(loop, _LoopPools())
        # through a transport that keeps up with many connections (see extractor._pool)
        transport = self.async_transport or default_async_transport(
            self.max_connections, proxy=proxy
        )
        client = httpx.AsyncClient(
            transport=transport, timeout=self.timeout, follow_redirects=False, trust_env=False
        )
        guard = _closed_with_loop(client)
        await anext(guard)
        pools.clients[proxy] = client
        pools.guards.append(guard)
        return client

    def close(self) -> None:
        """Close the sync pools."""
        with self._lock:
            clients, self._sync = list(self._sync.values()), {}
        for client in clients:
            client.close()

    async def aclose_loop(self) -> None:
        """Close the running event loop's pools (other loops close theirs as they end)."""
        with self._lock:
            pools = self._async.pop(asyncio.get_running_loop(), None)
        if pools is not None:
            for guard in pools.guards:
                await guard.aclose()  # each closes its client


class HTTPBackend:
    """One try of one request over HTTP (wrap in `backend.Retrying` for retries)."""

    def __init__(self, pools: Pools) -> None:
        self.pools = pools

    @staticmethod
    def body(request: Request) -> dict[str, Any]:
        """The JSON body `request` is sent as."""
        return build_body(
            request.mode,
            model=request.endpoint.model,
            messages=list(request.messages),
            schema=request.schema,
            dialect=request.endpoint.provider.dialect,
            params=request.params,
            strict=request.strict,
        )

    def complete(self, request: Request) -> Answer:
        client = self.pools.sync(request.endpoint)
        payload = post(client, request.endpoint, self.body(request), timeout=request.timeout)
        return decode(request.mode, payload)

    async def acomplete(self, request: Request) -> Answer:
        client = await self.pools.async_(request.endpoint)
        payload = await apost(client, request.endpoint, self.body(request), timeout=request.timeout)
        return decode(request.mode, payload)

    def stream(self, request: Request) -> Iterator[StreamItem]:
        endpoint = request.endpoint
        client = self.pools.sync(endpoint)
        response = open_stream(client, endpoint, self.body(request), timeout=request.timeout)
        assembler = ChunkAssembler(request.mode)
        events = read_stream(response, endpoint)
        try:
            yield ""  # open: retries (`backend.Retrying`) end here, as the first item arrives
            for event in events:
                if assembler.add(event):
                    yield assembler.text
        finally:
            events.close()
            response.close()  # `events` closes it too, once started
        yield decode(request.mode, assembler.payload())

    async def astream(self, request: Request) -> AsyncIterator[StreamItem]:
        endpoint = request.endpoint
        client = await self.pools.async_(endpoint)
        response = await aopen_stream(client, endpoint, self.body(request), timeout=request.timeout)
        assembler = ChunkAssembler(request.mode)
        events = aread_stream(response, endpoint)
        try:
            yield ""  # open: retries end here
            async for event in events:
                if assembler.add(event):
                    yield assembler.text
        finally:
            await events.aclose()
            await response.aclose()
        yield decode(request.mode, assembler.payload())

    async def aclose(self) -> None:
        await self.pools.aclose_loop()
