"""Transport retries over real HTTP: what is retried, how long we wait, what is not."""

from __future__ import annotations

import asyncio
import json

import pytest
from pydantic import BaseModel

from extractor import APIConnectionError, APIStatusError, APITimeoutError, RetryPolicy
from extractor._retry import retry_after
from extractor.testing import Answer, ChatServer, Delay, Drop, Fault, Raw, Truncated

TEXT = "Ann Lee"
OK = Answer(content='{"name": "Ann Lee"}')


class Person(BaseModel):
    name: str


def test_429_with_retry_after_waits_as_told_then_succeeds(make_client, server, sleeps):
    server.script(Fault(429, headers={"Retry-After": "1"}), OK)
    assert make_client().extract(Person, TEXT, mode="json_schema") == Person(name="Ann Lee")
    assert len(server.requests) == 2
    assert sleeps == [pytest.approx(1.0, abs=0.05)]


def test_async_429_with_retry_after_ms(make_client, server, sleeps):
    server.script(Fault(429, headers={"retry-after-ms": "250"}), OK)

    async def main() -> Person:
        async with make_client() as client:
            return await client.aextract(Person, TEXT, mode="json_schema")

    assert asyncio.run(main()) == Person(name="Ann Lee")
    assert sleeps == [pytest.approx(0.25)]


@pytest.mark.parametrize(
    "failure",
    [Fault(500), Fault(502), Fault(503), Fault(408), Fault(409), Drop(), Truncated(OK, keep=10)],
    ids=["500", "502", "503", "408", "409", "dropped", "truncated-body"],
)
def test_transient_failures_are_retried(make_client, server: ChatServer, sleeps, failure):
    server.script(failure, OK)
    assert make_client().extract(Person, TEXT, mode="json_schema") == Person(name="Ann Lee")
    assert len(server.requests) == 2
    assert len(sleeps) == 1 and 0 < sleeps[0] <= 60


def test_timeout_is_retried(make_client, server: ChatServer):
    server.script(Delay(2.0, OK), OK)
    client = make_client(timeout=0.3)
    assert client.extract(Person, TEXT, mode="json_schema") == Person(name="Ann Lee")
    assert len(server.requests) == 2


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_client_errors_are_not_retried(make_client, server: ChatServer, sleeps, status):
    server.script(Fault(status, body={"error": {"message": f"nope {status}"}}), OK)
    with pytest.raises(APIStatusError) as caught:
        make_client().extract(Person, TEXT, mode="json_schema")
    assert caught.value.status == status
    assert f"nope {status}" in str(caught.value)
    assert len(server.requests) == 1 and sleeps == []


def test_retries_stop_at_the_policy_cap_and_raise_the_last_error(make_client, server, sleeps):
    server.handler = lambda request: Fault(503)
    client = make_client(retry=RetryPolicy(attempts=3, sleep=sleeps.sleep))
    with pytest.raises(APIStatusError) as caught:
        client.extract(Person, TEXT, mode="json_schema")
    assert caught.value.status == 503
    assert len(server.requests) == 3 and len(sleeps) == 2
    assert sleeps[1] > 0  # exponential backoff with jitter, capped by max_wait


def test_backoff_grows_and_respects_the_cap(make_client, server, sleeps):
    server.handler = lambda request: Fault(500)
    policy = RetryPolicy(attempts=6, initial=1.0, max_wait=5.0, jitter=0.0, sleep=sleeps.sleep)
    with pytest.raises(APIStatusError):
        make_client(retry=policy).extract(Person, TEXT, mode="json_schema")
    assert sleeps == [1.0, 2.0, 4.0, 5.0, 5.0]


def test_server_asked_wait_is_capped_by_max_wait(make_client, server, sleeps):
    server.script(Fault(429, headers={"Retry-After": "3600"}), OK)
    policy = RetryPolicy(max_wait=30.0, sleep=sleeps.sleep)
    make_client(retry=policy).extract(Person, TEXT, mode="json_schema")
    assert sleeps == [30.0]


@pytest.mark.parametrize("run", ["sync", "async"])
def test_max_elapsed_counts_the_first_try(make_client, server, sleeps, run):
    # The first try fails slowly (0.5 s) with a retryable status; max_elapsed=0.4 has
    # passed by then, so nothing is retried: the time of the first try counts.
    server.script(Delay(0.5, Fault(503)), OK)
    client = make_client(
        retry=RetryPolicy(max_elapsed=0.4, sleep=sleeps.sleep, async_sleep=sleeps.async_sleep)
    )

    async def extract_async() -> Person:
        async with client:
            return await client.aextract(Person, TEXT, mode="json_schema")

    def extract() -> Person:
        if run == "sync":
            return client.extract(Person, TEXT, mode="json_schema")
        return asyncio.run(extract_async())

    with pytest.raises(APIStatusError):
        extract()
    assert len(server.requests) == 1 and sleeps == []


def test_transport_retries_do_not_spend_the_reask_budget(make_client, server, sleeps):
    server.script(Fault(503), Fault(429, headers={"Retry-After": "0"}), OK)
    result = make_client(max_retries=0).extract_result(Person, TEXT, mode="json_schema")
    assert len(result.attempts) == 1 and len(server.requests) == 3
    for request in server.requests[1:]:  # no transport error ever reaches the prompt
        assert request.messages == server.requests[0].messages


def test_connection_refused_is_an_api_connection_error(sleeps):
    from extractor import Client

    with ChatServer() as gone:
        url = gone.base_url
    client = Client(
        model="openai/m", base_url=url, retry=RetryPolicy(attempts=2, sleep=sleeps.sleep)
    )
    with pytest.raises(APIConnectionError):
        client.extract(Person, TEXT, mode="json_schema")
    client.close()
    assert len(sleeps) == 1


def test_timeout_error_type(make_client, server):
    server.handler = lambda request: Delay(1.0, OK)
    client = make_client(timeout=0.2, retry=RetryPolicy(attempts=1))
    with pytest.raises(APITimeoutError):
        client.extract(Person, TEXT, mode="json_schema")


def test_error_object_in_a_200_body_is_an_api_error_and_retried(make_client, server, sleeps):
    upstream = json.dumps({"error": {"code": 502, "message": "upstream overloaded"}})
    server.script(Raw(upstream), OK)
    assert make_client(provider="openrouter").extract(Person, TEXT) == Person(name="Ann Lee")
    assert len(server.requests) == 2


def test_malformed_json_body_is_retried(make_client, server, sleeps):
    server.script(Raw("{not json"), OK)
    assert make_client().extract(Person, TEXT, mode="json_schema") == Person(name="Ann Lee")
    assert len(sleeps) == 1


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "7"}, 7.0),
        ({"retry-after-ms": "1500"}, 1.5),
        ({"Retry-After": "Thu, 01 Jan 2026 00:00:10 GMT"}, 10.0),
        ({"x-ratelimit-reset-requests": "1s", "x-ratelimit-reset-tokens": "6m0s"}, 360.0),
        ({"x-ratelimit-reset-tokens": "20ms"}, 0.02),
        ({"X-RateLimit-Reset": "1767225605000"}, 5.0),
        ({"Retry-After": "soon"}, None),
        ({}, None),
    ],
)
def test_retry_after_headers(headers, expected):
    now = 1767225600.0  # 2026-01-01T00:00:00Z
    got = retry_after(headers, now=now)
    assert got == (pytest.approx(expected) if expected is not None else None)
