"""A fast chat-completions server on loopback for throughput benchmarks, on bare asyncio.

`extractor.testing.ChatServer` is built for scripting faults, one thread per connection;
at a thousand requests a second on two cores it would measure itself. This one parses
just enough HTTP/1.1 (keep-alive, Content-Length bodies), waits ``--latency`` seconds
without holding a thread, and answers every POST with the same chat completion: a record
as message content, and as a tool call when the request carries tools. Run it in its own
process so the client's CPU and memory are measured alone::

    python benchmarks/loopback_server.py --latency 0.1 --record '{"name": "Ann"}'

It prints ``PORT <n>`` on stdout once it listens, then serves until killed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

__all__ = ["main"]


def _completion(record: str, tools: bool) -> bytes:
    message: dict[str, Any] = {"role": "assistant", "content": None if tools else record}
    if tools:
        message["tool_calls"] = [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "extract", "arguments": record},
            }
        ]
    return json.dumps(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": 0,
            "model": "bench",
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 60, "completion_tokens": 20, "total_tokens": 80},
        }
    ).encode()


def _response(body: bytes) -> bytes:
    head = (
        f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


class _Protocol(asyncio.Protocol):
    """One connection: requests are read as they come and answered after the latency."""

    def __init__(self, latency: float, plain: bytes, tool: bytes) -> None:
        self.latency = latency
        self.plain = plain
        self.tool = tool
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            length = 0
            for line in bytes(self.buffer[:end]).split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if len(self.buffer) < end + 4 + length:
                return
            body = bytes(self.buffer[end + 4 : end + 4 + length])
            del self.buffer[: end + 4 + length]
            answer = self.tool if b'"tools"' in body else self.plain
            loop = asyncio.get_running_loop()
            if self.latency > 0:
                loop.call_later(self.latency, self._write, answer)
            else:
                self._write(answer)

    def _write(self, answer: bytes) -> None:
        if self.transport is not None:
            self.transport.write(answer)


async def _serve(port: int, latency: float, record: str) -> None:
    plain = _response(_completion(record, tools=False))
    tool = _response(_completion(record, tools=True))
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: _Protocol(latency, plain, tool), "127.0.0.1", port, backlog=4096
    )
    print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    """Parse the flags and serve until killed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0, help="default: any free port")
    parser.add_argument("--latency", type=float, default=0.1, help="seconds per answer")
    parser.add_argument("--record", default='{"name": "Ann"}', help="the JSON record answered")
    args = parser.parse_args(argv)
    try:
        asyncio.run(_serve(args.port, args.latency, args.record))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
