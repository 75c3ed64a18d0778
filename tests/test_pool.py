"""The async transports of batch jobs, over real HTTP to the loopback server."""

from __future__ import annotations

import asyncio
import importlib.util
import threading
import time

import pytest
from pydantic import BaseModel

from extractor._pool import PooledTransport, default_async_transport
from extractor.testing import Answer, ChatServer, Delay, RecordedRequest


class Contact(BaseModel):
    name: str


def test_pooled_transport_bounds_its_connections_and_answers_every_request(
    make_client, server: ChatServer
):
    arrivals: list[float] = []
    lock = threading.Lock()

    def slow(request: RecordedRequest) -> Delay:
        with lock:
            arrivals.append(time.monotonic())
        return Delay(0.3, then=Answer(content='{"name": "Ann"}'))

    server.handler = slow
    transport = PooledTransport(max_connections=10)  # two pools of five

    async def main() -> list[Contact]:
        async with make_client(mode="json_schema", async_transport=transport) as client:
            calls = (client.aextract(Contact, f"document {i}") for i in range(25))
            return await asyncio.gather(*calls)

    assert asyncio.run(main()) == [Contact(name="Ann")] * 25
    assert len(arrivals) == 25
    arrivals.sort()
    # ten connections: the eleventh request waited for an answer to come back first
    assert arrivals[9] - arrivals[0] < 0.25
    assert arrivals[10] - arrivals[0] >= 0.25
    assert "in_flight=0" in repr(transport)


def test_pooled_transport_refuses_no_connections():
    with pytest.raises(ValueError, match="max_connections must be 1 or more"):
        PooledTransport(max_connections=0)


def test_default_async_transport_is_aiohttp_where_installed_else_pooled():
    transport = default_async_transport(50)
    if importlib.util.find_spec("httpx_aiohttp") is None:
        assert isinstance(transport, PooledTransport)
    else:
        from httpx_aiohttp import AiohttpTransport

        assert isinstance(transport, AiohttpTransport)
