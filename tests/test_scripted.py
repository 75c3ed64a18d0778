"""`ScriptedBackend`: users' unit tests of code that calls extractor, with no server."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import BaseModel

from extractor import APIStatusError, Client, RetryPolicy
from extractor._result import Usage
from extractor.backend import Answer
from extractor.testing import ScriptedBackend


class Person(BaseModel):
    name: str
    age: int


def test_answers_come_in_order_and_an_invalid_one_is_reasked() -> None:
    backend = ScriptedBackend('{"name": "Ann"}', {"name": "Ann", "age": 41})
    client = Client("test/model", backend=backend, mode="json_schema")

    assert client.extract(Person, "Ann, 41") == Person(name="Ann", age=41)
    first, second = backend.requests
    assert first.mode == second.mode == "json_schema"
    assert first.document == "Ann, 41"
    assert "age" in second.messages[-1]["content"]  # the reask names the missing field
    assert backend.pending == 0


def test_an_exception_in_the_script_is_raised_through_the_retry_policy() -> None:
    waits: list[float] = []
    backend = ScriptedBackend(APIStatusError(503, "busy"), {"name": "Bo", "age": 7})
    client = Client("test/model", backend=backend, retry=RetryPolicy(sleep=waits.append))
    result = client.extract_result(Person, "Bo is 7")
    assert result.value == Person(name="Bo", age=7)
    assert len(waits) == 1 and len(backend.requests) == 2


def test_an_empty_script_fails_loudly() -> None:
    client = Client("test/model", backend=ScriptedBackend(), retry=RetryPolicy(attempts=1))
    with pytest.raises(APIStatusError, match="no scripted answer"):
        client.extract(Person, "x")


def test_streams_async_calls_and_batches_use_it_too() -> None:
    backend = ScriptedBackend()
    client = Client("test/model", backend=backend)

    backend.script({"name": "Cy", "age": 3})
    shown = list(client.stream(Person, "Cy, 3"))
    assert shown[-1] == Person(name="Cy", age=3) and len(shown) >= 2  # previews, then it

    backend.script({"name": "Di", "age": 4})
    assert asyncio.run(client.aextract(Person, "Di, 4")).name == "Di"

    backend.script(*[{"name": f"P{i}", "age": i} for i in range(5)])
    results = list(client.extract_many(Person, [f"P{i}" for i in range(5)], rpm=6000))
    assert sorted(r.value.age for r in results) == list(range(5))


def test_an_answer_carries_its_usage_and_finish_reason() -> None:
    backend = ScriptedBackend(
        Answer('{"name": "Ed", "age"', "length", None, Usage(7, 3, 10), "r1"),
        Answer('{"name": "Ed", "age": 5}', "stop", None, Usage(8, 4, 12), "r2"),
    )
    result = Client("test/model", backend=backend).extract_result(Person, "Ed, 5")
    assert result.usage.total_tokens == 22
    assert [a.finish_reason for a in result.attempts] == ["length", "stop"]


def test_the_test_provider_without_a_backend_says_how_to_script_it() -> None:
    client = Client("test/model", retry=RetryPolicy(attempts=1))
    with pytest.raises(APIStatusError, match=r"backend=ScriptedBackend\("):
        client.extract(Person, "x")
