"""Shared fixtures: a loopback chat server, clients that record their sleeps, wire checks.

Every request body a test sends through the `server` fixture is checked when the test
ends: against OpenAI's official `CreateChatCompletionRequest` schema (openai and
openrouter dialects), or against the fields Mistral's API accepts (mistral dialect).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from extractor import Client, RetryPolicy
from extractor.testing import ChatServer
from tests.wire import check_mistral_body, check_openai_body


class Sleeps(list[float]):
    """Waits the retry policy asked for, recorded instead of slept."""

    def sleep(self, seconds: float) -> None:
        self.append(seconds)

    async def async_sleep(self, seconds: float) -> None:
        self.append(seconds)


class Wire:
    """Which dialects a test's clients spoke, so their bodies are checked by the right rules."""

    def __init__(self) -> None:
        self.dialects: set[str] = set()


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def wire() -> Wire:
    return Wire()


@pytest.fixture
def server(wire: Wire) -> Iterator[ChatServer]:
    with ChatServer() as chat:
        yield chat
        bodies = [r.body for r in chat.requests if r.body is not None]
    check = check_mistral_body if "mistral" in wire.dialects else check_openai_body
    for body in bodies:
        check(body)


@pytest.fixture
def make_client(server: ChatServer, sleeps: Sleeps, wire: Wire) -> Iterator[Callable[..., Client]]:
    """A client for the test server; `provider` picks the preset whose dialect it speaks."""
    made: list[Client] = []

    def make(provider: str = "openai", **options: Any) -> Client:
        wire.dialects.add(provider)
        options.setdefault("retry", RetryPolicy(sleep=sleeps.sleep, async_sleep=sleeps.async_sleep))
        client = Client(model=f"{provider}/test-model", base_url=server.base_url, **options)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


@pytest.fixture(autouse=True, scope="session")
def _close_default_client() -> Iterator[None]:
    """Decorated classes share the process-wide client; close its pool when the run ends."""
    yield
    import extractor._api

    if extractor._api._default is not None:
        extractor._api._default.close()
