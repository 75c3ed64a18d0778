"""A hostile world at the transport: slow servers, proxies, shared clients, echoed keys.

Every test talks to real loopback sockets: the scripted `ChatServer`, and where a proxy
is needed, a small recording proxy of its own. Timings are bounds with room to spare,
never exact values: a deadline must end a call within its own length plus a margin.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from extractor import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    Client,
    ConfigurationError,
    RetryPolicy,
)
from extractor._providers import proxy_for
from extractor._retry import retry_after
from extractor.testing import Answer, ChatServer, Drip, Echo, Fault, Heartbeat, Raw, Stream

ROOT = Path(__file__).resolve().parent.parent
KEY = "sk-test-hardening-0123456789"
TEXT = "Ann Lee can be reached at ann@example.com."
GOOD = Answer(content=json.dumps({"name": "Ann Lee"}))
MARGIN = 2.0  # seconds a deadline may overrun on a loaded 2-core machine


class Contact(BaseModel):
    name: str


_made: list[Client] = []


def _client(server: ChatServer, **options: Any) -> Client:
    options.setdefault("retry", RetryPolicy(attempts=1))
    client = Client(
        model="openai/test-model",
        base_url=server.base_url,
        api_key=KEY,
        mode="json_schema",
        **options,
    )
    _made.append(client)
    return client


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _made:
        _made.pop().close()


def _elapsed(
    call: Callable[[], Any], error: type[BaseException] | tuple[type[BaseException], ...]
) -> float:
    start = time.monotonic()
    with pytest.raises(error):
        call()
    return time.monotonic() - start


# --- 1. deadlines ---------------------------------------------------------------------


@pytest.mark.parametrize("head", [False, True], ids=["body drips", "status line drips"])
def test_a_dripping_server_times_out_sync_and_async(server: ChatServer, head: bool) -> None:
    client = _client(server, timeout=1.0)
    server.script(Drip(GOOD, interval=0.2, head=head), Drip(GOOD, interval=0.2, head=head))

    took = _elapsed(lambda: client.extract(Contact, TEXT), APITimeoutError)
    assert took < 1.0 + MARGIN

    took = _elapsed(lambda: asyncio.run(client.aextract(Contact, TEXT)), APITimeoutError)
    assert took < 1.0 + MARGIN
    client.close()


def test_the_timeout_error_says_which_deadline_passed(server: ChatServer) -> None:
    server.script(Drip(GOOD, interval=0.2))
    with pytest.raises(APITimeoutError, match=r"within 1 s \(timeout"):
        _client(server, timeout=1.0).extract(Contact, TEXT)


@pytest.mark.parametrize("item", ["drip", "heartbeat"])
def test_a_stream_that_never_finishes_times_out(server: ChatServer, item: str) -> None:
    def script() -> None:
        if item == "drip":
            server.script(Drip(Stream(GOOD), interval=0.2))
        else:
            server.script(Heartbeat(interval=0.2))

    client = _client(server, timeout=1.0)
    script()
    took = _elapsed(lambda: list(client.stream(Contact, TEXT)), APITimeoutError)
    assert took < 1.0 + MARGIN

    async def consume() -> None:
        async for _ in client.astream(Contact, TEXT):
            pass

    script()
    took = _elapsed(lambda: asyncio.run(consume()), APITimeoutError)
    assert took < 1.0 + MARGIN
    client.close()


def test_a_comment_only_answer_to_a_plain_request_times_out(server: ChatServer) -> None:
    server.script(Heartbeat(interval=0.2), Heartbeat(interval=0.2))
    client = _client(server, timeout=1.0)
    assert _elapsed(lambda: client.extract(Contact, TEXT), APITimeoutError) < 1.0 + MARGIN
    took = _elapsed(lambda: asyncio.run(client.aextract(Contact, TEXT)), APITimeoutError)
    assert took < 1.0 + MARGIN
    client.close()


def test_the_deadline_bounds_retries_and_their_waits(server: ChatServer) -> None:
    server.handler = lambda request: Fault(503, headers={"Retry-After": "0.3"})
    client = _client(server, deadline=1.0, retry=RetryPolicy(attempts=1000, max_elapsed=None))
    # the last 503, or (a try begun just before the deadline, on a loaded machine) the
    # deadline itself: either way it ends by the deadline
    ends = (APIStatusError, APITimeoutError)
    took = _elapsed(lambda: client.extract(Contact, TEXT), ends)
    assert took < 1.0 + MARGIN
    assert 2 <= len(server.requests) <= 5  # retried while there was time, then stopped

    server.reset()
    server.handler = lambda request: Fault(503, headers={"Retry-After": "0.3"})
    took = _elapsed(lambda: asyncio.run(client.aextract(Contact, TEXT)), ends)
    assert took < 1.0 + MARGIN
    client.close()


def test_the_deadline_bounds_reasks(server: ChatServer) -> None:
    from extractor.testing import Delay

    server.handler = lambda request: Delay(0.4, Answer(content='{"nom": 1}'))  # never valid
    client = _client(server, deadline=1.0, max_retries=50)
    with pytest.raises(APITimeoutError, match="extraction's deadline of 1 s"):
        client.extract(Contact, TEXT)
    assert len(server.requests) <= 4
    client.close()


def test_a_batch_against_a_dripping_server_finishes_with_failures(server: ChatServer) -> None:
    server.handler = lambda request: Drip(GOOD, interval=0.3)
    client = _client(server, timeout=1.0)
    start = time.monotonic()
    results = list(client.extract_many(Contact, [TEXT] * 6, concurrency=6))
    assert time.monotonic() - start < 1.0 + 2 * MARGIN
    assert len(results) == 6
    assert all(isinstance(r.error, APITimeoutError) for r in results)
    client.close()


def test_timeout_and_deadline_are_checked() -> None:
    with pytest.raises(ConfigurationError, match="timeout must be a number of seconds"):
        Client(timeout=0)
    with pytest.raises(ConfigurationError, match="deadline must be"):
        Client(deadline=-1)
    assert Client(deadline=None).deadline is None


# --- 3. proxies -----------------------------------------------------------------------


class RecordingProxy:
    """A loopback 'proxy' that records the head of each request and refuses it."""

    def __init__(self) -> None:
        self.heads: list[str] = []
        self._socket = socket.create_server(("127.0.0.1", 0))
        self._socket.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._socket.getsockname()[1]}"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._socket.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(2)
                data = b""
                try:
                    while b"\r\n\r\n" not in data:
                        chunk = conn.recv(4096)
                        if not chunk:
                            break
                        data += chunk
                    self.heads.append(data.decode("latin-1"))
                    conn.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
                except OSError:
                    pass

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._socket.close()


@pytest.fixture
def proxy() -> Iterator[RecordingProxy]:
    recording = RecordingProxy()
    yield recording
    recording.close()


@pytest.mark.parametrize("variable", ["HTTP_PROXY", "http_proxy", "ALL_PROXY"])
def test_a_loopback_server_is_never_reached_through_a_proxy(
    server: ChatServer, proxy: RecordingProxy, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    monkeypatch.setenv(variable, proxy.url)
    client = _client(server)
    server.script(GOOD, GOOD)
    assert client.extract(Contact, TEXT).name == "Ann Lee"
    assert asyncio.run(client.aextract(Contact, TEXT)).name == "Ann Lee"
    assert proxy.heads == []  # the key never went to the proxy
    assert all(r.headers["authorization"] == f"Bearer {KEY}" for r in server.requests)
    client.close()


def test_sync_and_async_take_the_same_proxy_to_a_remote_host(
    proxy: RecordingProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    client = Client(
        model="openai/m",
        base_url="https://api.example.invalid/v1",
        api_key=KEY,
        retry=RetryPolicy(attempts=1),
    )
    with pytest.raises(APIConnectionError):
        client.extract(Contact, TEXT)
    with pytest.raises(APIConnectionError):
        asyncio.run(client.aextract(Contact, TEXT))
    assert len(proxy.heads) == 2
    for head in proxy.heads:  # a tunnel: the proxy sees where to, never the key
        assert head.startswith("CONNECT api.example.invalid:443 ")
        assert KEY not in head
    client.close()


def test_no_proxy_and_the_scheme_choose_the_route() -> None:
    env = {"https_proxy": "proxy.corp:3128", "NO_PROXY": ".internal.example, other.example:443"}
    assert proxy_for("https://api.openai.com/v1", env) == "http://proxy.corp:3128"
    assert proxy_for("https://llm.internal.example/v1", env) is None
    assert proxy_for("https://other.example/v1", env) is None
    assert proxy_for("http://api.example.com/v1", env) is None  # no http_proxy given
    assert proxy_for("http://[::1]:8080/v1", {"http_proxy": "http://p:1"}) is None
    assert proxy_for("https://a.example/v1", {"all_proxy": "socks5://p:1"}) == "socks5://p:1"
    assert proxy_for("https://a.example/v1", {"https_proxy": "http://p:1", "no_proxy": "*"}) is None


# --- 5. one client, many threads and loops --------------------------------------------


def test_one_client_serves_threads_that_each_run_their_own_loop(
    server: ChatServer, capfd: pytest.CaptureFixture[str]
) -> None:
    server.handler = lambda request: GOOD
    client = _client(server, retry=RetryPolicy(attempts=1))
    errors: list[BaseException] = []
    done = []

    def work() -> None:
        for _ in range(10):
            try:
                done.append(asyncio.run(client.aextract(Contact, TEXT)))
            except BaseException as exc:  # every failure is the test's business
                errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    client.close()
    assert errors == []
    assert len(done) == 80
    assert "Future exception was never retrieved" not in capfd.readouterr().err


def test_a_given_async_transport_refuses_a_second_live_loop(server: ChatServer) -> None:
    import httpx

    server.handler = lambda request: GOOD
    client = _client(server, async_transport=httpx.AsyncHTTPTransport())
    started, release = threading.Event(), threading.Event()

    async def hold() -> None:
        await client.aextract(Contact, TEXT)
        started.set()
        while not release.is_set():
            await asyncio.sleep(0.01)

    holder = threading.Thread(target=lambda: asyncio.run(hold()))
    holder.start()
    assert started.wait(10)
    try:
        with pytest.raises(ConfigurationError, match="serves one event loop"):
            asyncio.run(client.aextract(Contact, TEXT))
    finally:
        release.set()
        holder.join()


# --- 6. user and password in base_url -------------------------------------------------


def test_a_base_url_with_a_password_is_refused_without_showing_it(server: ChatServer) -> None:
    url = server.base_url.replace("http://", "http://ann:hunter2@")
    with pytest.raises(ConfigurationError, match="user name or password") as caught:
        Client(model="openai/m", base_url=url, api_key=KEY)
    assert "hunter2" not in str(caught.value)
    with pytest.raises(ConfigurationError) as caught:
        Client(model="openai/m", api_key=KEY).extract(Contact, TEXT, base_url=url)
    assert "hunter2" not in str(caught.value)
    assert server.requests == []


def test_the_cli_refuses_a_password_in_base_url_in_one_line(server: ChatServer, tmp_path) -> None:
    document = tmp_path / "a.txt"
    document.write_text(TEXT)
    url = server.base_url.replace("http://", "http://ann:hunter2@")
    run = subprocess.run(
        [
            *(sys.executable, "-m", "extractor", "extract", f"{__file__}:Contact", str(document)),
            *("--model", "openai/m", "--base-url", url),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={"OPENAI_API_KEY": KEY, "PATH": "/usr/bin:/bin"},
        cwd=ROOT,
    )
    assert run.returncode == 2
    assert "hunter2" not in run.stderr + run.stdout
    assert "Traceback" not in run.stderr
    assert server.requests == []


# --- 9. a key echoed back ------------------------------------------------------------


def test_a_key_echoed_in_headers_is_masked_in_errors_and_logs(
    server: ChatServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server.script(Echo(Fault(500, body=f"upstream saw Bearer {KEY}")))
    with pytest.raises(APIStatusError) as caught:
        _client(server).extract(Contact, TEXT)
    error = caught.value
    assert "x-echo-authorization" in error.headers  # the header was there ...
    assert KEY not in json.dumps(error.headers)  # ... with the key masked
    assert KEY not in str(error) and KEY not in error.body
    logged = [record.getMessage() for record in caplog.records]
    assert any("x-echo-authorization" in line.lower() for line in logged)  # httpcore's DEBUG
    assert not [line for line in logged if KEY in line]
    frames = []
    tb = error.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename.endswith("transport.py"):
            frames.append(tb.tb_frame)
        tb = tb.tb_next
    assert frames
    for frame in frames:  # what a traceback that shows locals would print
        for value in frame.f_locals.values():
            if isinstance(value, (str, bytes, bytearray)):
                assert KEY.encode() not in (value.encode() if isinstance(value, str) else value)


# --- 10. redirects, Retry-After, oversize bodies ---------------------------------------


def test_a_redirect_is_reported_with_its_location_and_not_retried(server: ChatServer) -> None:
    server.handler = lambda request: Fault(
        307, headers={"Location": "https://elsewhere.example/v1"}
    )
    client = _client(server, retry=RetryPolicy(attempts=5, sleep=lambda s: None))
    with pytest.raises(
        APIStatusError, match=r"redirects to https://elsewhere\.example/v1"
    ) as caught:
        client.extract(Contact, TEXT)
    assert caught.value.status == 307
    assert len(server.requests) == 1


def test_a_negative_retry_after_falls_back_to_backoff(server: ChatServer) -> None:
    waits: list[float] = []
    server.script(*[Fault(503, headers={"Retry-After": "-5"})] * 3, GOOD)
    client = _client(server, retry=RetryPolicy(attempts=5, initial=0.5, sleep=waits.append))
    assert client.extract(Contact, TEXT).name == "Ann Lee"
    assert len(waits) == 3
    assert all(wait >= 0.5 for wait in waits)  # the backoff, not "no wait at all"


@pytest.mark.parametrize("value", ["-5", "nan", "inf", "1e12", "-0.5"])
def test_absurd_retry_after_values_are_ignored(value: str) -> None:
    assert retry_after({"Retry-After": value}) is None
    assert retry_after({"retry-after-ms": value}) is None


def test_sane_retry_after_values_are_kept() -> None:
    assert retry_after({"Retry-After": "0"}) == 0.0
    assert retry_after({"Retry-After": "7"}) == 7.0
    assert retry_after({"retry-after-ms": "250"}) == 0.25


def test_an_oversize_body_is_downloaded_once(server: ChatServer) -> None:
    big = b'{"choices": "' + b"x" * (17 * 1024 * 1024) + b'"}'
    server.handler = lambda request: Raw(big)
    client = _client(server, retry=RetryPolicy(attempts=5, sleep=lambda s: None))
    with pytest.raises(APIConnectionError, match="larger than"):
        client.extract(Contact, TEXT)
    assert len(server.requests) == 1


def test_a_rate_limit_pause_does_not_spend_the_documents_deadlines(server: ChatServer) -> None:
    """A 429 asking for 3 s pauses the whole job; the wait is the job's, not the documents'.

    Each document's deadline (1.5 s) is moved on by the time it waited for its turn, so
    the documents in flight finish after the pause instead of failing at their deadline
    (and stopping the job as if the provider were down). The one the 429 answered would
    have to wait past its own deadline: it ends with the 429.
    """
    first = threading.Lock()

    def answer(request: Any) -> Any:
        if first.acquire(blocking=False):
            return Fault(429, headers={"Retry-After": "3"})
        return GOOD

    server.handler = answer
    client = _client(server, deadline=1.5, retry=RetryPolicy(attempts=3))
    start = time.monotonic()
    results = list(client.extract_many(Contact, [TEXT] * 8, concurrency=4, rpm=6000))
    took = time.monotonic() - start
    assert len(results) == 8
    assert 2.5 < took < 3 + 2 * MARGIN  # the pause was waited out, once
    failed = [r.error for r in results if r.error is not None]
    assert len(failed) == 1
    assert isinstance(failed[0], APIStatusError) and failed[0].status == 429
