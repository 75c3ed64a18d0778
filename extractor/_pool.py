"""`PooledTransport`: async connections spread over several small httpx pools.

httpx 0.28's connection pool (httpcore) matches every waiting request against every
connection it holds, on every request and every response: the work grows with the
square of the connections. At concurrency 100 it costs more CPU than everything else
a request does: 1,000 requests against a loopback server answering in 100 ms take
about 1.8 s with httpx's default limits and 9 to 13 s with 100 keep-alive connections,
where 1.0 s is ideal (`benchmarks/batch.py`, part A). Twenty pools of five connections
do a twentieth of that matching and keep up with the aiohttp transport, without a new
dependency.

Each request goes to the pool with the fewest requests waiting for their answer, so no
pool queues while another has room.
"""

from __future__ import annotations

import functools
import importlib.util
import math
import ssl
import sys
from typing import Final

import httpx

__all__ = ["PooledTransport", "default_async_transport"]

#: Connections per pool: small enough that httpcore's matching stays cheap (5 used 10%
#: less CPU than 10 at the same throughput; 1 queued requests behind busy connections).
CONNECTIONS_PER_POOL: Final = 5


def _mark_sniffio_absent() -> None:
    """Make httpcore's per-request `import sniffio` fail fast where sniffio is not installed.

    httpcore 1.0 imports sniffio inside every async request to learn the event loop, and
    falls back to asyncio when that fails. Newer anyio no longer brings sniffio, and a
    failed import is not cached: each one searches the whole `sys.path` again, about a
    third of a batch's CPU (measured: 1.23 ms per document against 0.87 ms). `None` in
    `sys.modules` is Python's own marker for "known to be absent": the import still
    fails, as it would anyway, without the search.
    """
    if "sniffio" not in sys.modules and importlib.util.find_spec("sniffio") is None:
        sys.modules["sniffio"] = None  # type: ignore[assignment]  # the import system's marker


@functools.lru_cache(maxsize=1)
def _tls() -> ssl.SSLContext:
    """One TLS context for every pool. Loading the CA bundle takes 18 ms, so a context per
    pool cost 0.36 s per client of twenty pools: on the first call in each event loop."""
    return httpx.create_ssl_context()


class PooledTransport(httpx.AsyncBaseTransport):
    """An async transport over `ceil(max_connections / 5)` httpx pools, least loaded first.

    `max_connections` bounds the open connections over all pools, as
    `httpx.Limits(max_connections=...)` does for one; requests beyond it wait in a pool.
    Every pool goes through `proxy`, if one is given.
    """

    def __init__(
        self,
        max_connections: int = 100,
        *,
        keepalive_expiry: float = 5.0,
        proxy: str | None = None,
    ) -> None:
        if max_connections < 1:
            raise ValueError(f"max_connections must be 1 or more, not {max_connections}")
        _mark_sniffio_absent()
        count = math.ceil(max_connections / CONNECTIONS_PER_POOL)
        each = math.ceil(max_connections / count)
        limits = httpx.Limits(
            max_connections=each, max_keepalive_connections=each, keepalive_expiry=keepalive_expiry
        )
        self._pools = [
            httpx.AsyncHTTPTransport(verify=_tls(), limits=limits, proxy=proxy)
            for _ in range(count)
        ]
        self._load = [0] * count

    def __repr__(self) -> str:
        return f"PooledTransport(pools={len(self._pools)}, in_flight={sum(self._load)})"

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send `request` through the pool with the fewest requests waiting for an answer."""
        load = self._load
        index = load.index(min(load))
        load[index] += 1
        try:
            return await self._pools[index].handle_async_request(request)
        finally:
            # counted until the headers arrive: the body follows at once (`apost` reads it)
            load[index] -= 1

    async def aclose(self) -> None:
        """Close every pool's connections."""
        for pool in self._pools:
            await pool.aclose()


def default_async_transport(
    max_connections: int = 100, *, proxy: str | None = None
) -> httpx.AsyncBaseTransport:
    """The async transport extractor uses unless given one: the cheapest available.

    With the `aiohttp` extra installed (`httpx-aiohttp`), aiohttp's connection pool behind
    httpx's interface: half the client CPU of httpx's own per request at concurrency 100
    (`benchmarks/batch.py`). Without it, or through a proxy, `PooledTransport`, with no
    new dependency.
    """
    if proxy is not None:
        return PooledTransport(max_connections, proxy=proxy)
    try:
        from httpx_aiohttp import AiohttpTransport
    except ImportError:
        return PooledTransport(max_connections)
    limits = httpx.Limits(
        max_connections=max_connections, max_keepalive_connections=max_connections
    )
    transport: httpx.AsyncBaseTransport = AiohttpTransport(limits=limits)
    return transport
