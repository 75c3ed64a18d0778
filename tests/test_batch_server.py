"""Tests for the provider batch APIs of `ChatServer` (OpenAI's and Mistral's shapes).

Everything goes over real loopback HTTP with httpx. Every OpenAI Batch object and every
output or error line the server returns is checked against the official schemas in
`tests/data/openai-chat-schemas.json`, through a `referencing` registry over that document.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from typing import Any

import httpx
import jsonschema
import pytest
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from extractor.testing import (
    Answer,
    BatchOutcome,
    BatchSubmission,
    ChatServer,
    Delay,
    Drop,
    Fault,
    Raw,
    RecordedRequest,
)
from tests.wire import SCHEMAS, check_openai_body

CHAT = "/v1/chat/completions"
SCHEMA_URI = "urn:extractor:openai-chat-schemas"


# --- the official schemas ----------------------------------------------------------


@cache
def _registry() -> Registry[Any]:
    document = json.loads(SCHEMAS.read_text())
    resource: Resource[Any] = Resource.from_contents(document, default_specification=DRAFT202012)
    registry: Registry[Any] = Registry().with_resource(SCHEMA_URI, resource)
    return registry


@cache
def _validator(name: str) -> jsonschema.Draft202012Validator:
    schema = {"$ref": f"{SCHEMA_URI}#/components/schemas/{name}"}
    return jsonschema.Draft202012Validator(schema, registry=_registry())


def valid(name: str, instance: Any) -> Any:
    """Fail unless ``instance`` is a valid ``name`` (a component of OpenAI's spec)."""
    errors = sorted(_validator(name).iter_errors(instance), key=lambda e: list(e.path))
    assert not errors, f"not a valid {name}: {errors[0].message} at {list(errors[0].path)}"
    return instance


def test_the_schema_checker_rejects_what_it_should() -> None:
    with pytest.raises(AssertionError, match="not a valid Batch"):
        valid("Batch", {"id": "b", "object": "batch", "status": "done"})
    with pytest.raises(AssertionError, match="BatchRequestOutput"):
        valid("BatchRequestOutput", {"id": "x", "custom_id": 3})
    valid("BatchRequestCounts", {"total": 1, "completed": 1, "failed": 0})


# --- fixtures and helpers ------------------------------------------------------------


@pytest.fixture
def server() -> Iterator[ChatServer]:
    with ChatServer() as running:
        yield running


@pytest.fixture
def client(server: ChatServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=10.0) as http:
        yield http


def body(index: int, model: str | None = "gpt-test") -> dict[str, Any]:
    request: dict[str, Any] = {"messages": [{"role": "user", "content": f"document {index}"}]}
    if model is not None:
        request["model"] = model
    return request


def openai_lines(count: int, prefix: str = "doc", model: str = "gpt-test") -> list[Any]:
    return [
        {"custom_id": f"{prefix}-{i}", "method": "POST", "url": CHAT, "body": body(i, model)}
        for i in range(count)
    ]


def mistral_lines(count: int, prefix: str = "doc") -> list[Any]:
    return [{"custom_id": f"{prefix}-{i}", "body": body(i, model=None)} for i in range(count)]


def jsonl(lines: list[Any]) -> bytes:
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


def upload(client: httpx.Client, data: bytes | list[Any], purpose: str = "batch") -> str:
    content = data if isinstance(data, bytes) else jsonl(data)
    response = client.post(
        "/files", files={"file": ("input.jsonl", content)}, data={"purpose": purpose}
    )
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


def create(client: httpx.Client, file_id: str, **extra: Any) -> dict[str, Any]:
    request = {
        "input_file_id": file_id,
        "endpoint": CHAT,
        "completion_window": "24h",
        **extra,
    }
    valid("CreateBatchRequest", request)
    response = client.post("/batches", json=request)
    assert response.status_code == 200, response.text
    return valid("Batch", response.json())  # type: ignore[no-any-return]


def poll(client: httpx.Client, batch_id: str) -> dict[str, Any]:
    response = client.get(f"/batches/{batch_id}")
    assert response.status_code == 200, response.text
    return valid("Batch", response.json())  # type: ignore[no-any-return]


def create_job(client: httpx.Client, file_ids: list[str], **extra: Any) -> dict[str, Any]:
    request = {"input_files": file_ids, "model": "mistral-small-latest", "endpoint": CHAT}
    response = client.post("/batch/jobs", json={**request, **extra})
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def poll_job(client: httpx.Client, job_id: str) -> dict[str, Any]:
    response = client.get(f"/batch/jobs/{job_id}")
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def rows(client: httpx.Client, file_id: str | None, check: bool = True) -> list[dict[str, Any]]:
    """The lines of a result file, each checked against `BatchRequestOutput`."""
    assert file_id is not None
    response = client.get(f"/files/{file_id}/content")
    assert response.status_code == 200, response.text
    found = [json.loads(line) for line in response.content.splitlines()]
    if check:
        for row in found:
            valid("BatchRequestOutput", row)
    return found


def by_id(found: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {row["custom_id"]: row for row in found}


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert isinstance(error["message"], str)
    assert isinstance(error["type"], str)
    return error  # type: ignore[no-any-return]


# --- OpenAI: upload, create, poll, download ------------------------------------------


def test_openai_round_trip(server: ChatServer, client: httpx.Client) -> None:
    lines = openai_lines(3)
    for line in lines:
        valid("BatchRequestInput", line)
        check_openai_body(line["body"])
    data = jsonl(lines)
    response = client.post(
        "/files", files={"file": ("docs.jsonl", data)}, data={"purpose": "batch"}
    )
    stored = response.json()
    assert response.status_code == 200
    assert stored["id"].startswith("file-")
    assert stored["object"] == "file"
    assert (stored["bytes"], stored["filename"], stored["purpose"]) == (
        len(data),
        "docs.jsonl",
        "batch",
    )
    assert isinstance(stored["created_at"], int)

    server.script(Answer(content='{"n": 0}'), Fault(429), Answer(tool_call={"n": 2}))
    created = create(client, stored["id"], metadata={"job": "nightly"})
    assert created["status"] == "validating"
    assert created["id"].startswith("batch_")
    assert created["request_counts"] == {"total": 0, "completed": 0, "failed": 0}
    assert created["metadata"] == {"job": "nightly"}
    assert created["expires_at"] == created["created_at"] + 24 * 3600
    assert server.batch_lines == []  # nothing runs before the first poll

    done = poll(client, created["id"])
    assert done["status"] == "completed"
    assert done["request_counts"] == {"total": 3, "completed": 2, "failed": 1}
    assert done["model"] == "gpt-test"
    for stamp in ("in_progress_at", "finalizing_at", "completed_at"):
        assert done[stamp] >= done["created_at"]
    assert done["usage"]["input_tokens"] == 20
    assert done["usage"]["total_tokens"] == 30

    outputs = by_id(rows(client, done["output_file_id"]))
    assert sorted(outputs) == ["doc-0", "doc-2"]
    first = outputs["doc-0"]
    assert first["id"].startswith("batch_req_")
    assert first["error"] is None
    assert first["response"]["status_code"] == 200
    assert first["response"]["request_id"].startswith("req_")
    completion = first["response"]["body"]
    assert completion["object"] == "chat.completion"
    assert completion["choices"][0]["message"]["content"] == '{"n": 0}'
    call = outputs["doc-2"]["response"]["body"]["choices"][0]["message"]["tool_calls"][0]
    assert json.loads(call["function"]["arguments"]) == {"n": 2}

    errors = by_id(rows(client, done["error_file_id"]))
    assert list(errors) == ["doc-1"]
    assert errors["doc-1"]["response"]["status_code"] == 429
    assert errors["doc-1"]["response"]["body"]["error"]["type"] == "rate_limit_error"

    recorded = server.batch_lines
    assert [r.custom_id for r in recorded] == ["doc-0", "doc-1", "doc-2"]
    assert {r.batch_id for r in recorded} == {created["id"]}
    assert recorded[1].body == lines[1]["body"]
    assert json.loads(recorded[1].raw) == lines[1]
    assert recorded[1].path == CHAT
    assert server.requests == []  # batch lines are not online requests
    assert "doc-1" in repr(recorded[1])


def test_answers_read_the_same_as_online(server: ChatServer, client: httpx.Client) -> None:
    server.script(Answer(content="same", usage={"prompt_tokens": 1, "cost": 0.5}))
    online = client.post("/chat/completions", json=body(0)).json()
    server.script(Answer(content="same", usage={"prompt_tokens": 1, "cost": 0.5}))
    batch = create(client, upload(client, openai_lines(1)))
    offline = rows(client, poll(client, batch["id"])["output_file_id"])[0]["response"]["body"]
    for key in ("id", "created"):
        online.pop(key)
        offline.pop(key)
    assert offline == online


def test_the_polls_move_a_batch_through_its_statuses(
    server: ChatServer, client: httpx.Client
) -> None:
    server.handler = lambda request: Answer(content="ok")
    server.batch_script(BatchOutcome(polls=2), BatchOutcome(polls=1), BatchOutcome(polls=3))
    seen = []
    for _ in range(3):
        batch = create(client, upload(client, openai_lines(2)))
        statuses = [batch["status"]]
        while statuses[-1] != "completed":
            statuses.append(poll(client, batch["id"])["status"])
        seen.append(statuses)
    assert seen == [
        ["validating", "in_progress", "finalizing", "completed"],
        ["validating", "in_progress", "completed"],
        ["validating", "in_progress", "in_progress", "finalizing", "completed"],
    ]
    assert server.pending_batch_outcomes == 0
    again = poll(client, batch["id"])
    assert again["status"] == "completed"
    assert len(server.batch_lines) == 6  # a finished batch never runs a line again


def test_lines_run_a_few_per_poll(server: ChatServer, client: httpx.Client) -> None:
    server.handler = lambda request: Answer(content="ok")
    server.batch_script(BatchOutcome(polls=3, lines_per_poll=2))
    batch = create(client, upload(client, openai_lines(5)))
    counts = []
    for _ in range(4):
        shown = poll(client, batch["id"])
        counts.append((shown["status"], shown["request_counts"]["completed"]))
    assert counts == [
        ("in_progress", 2),
        ("in_progress", 4),
        ("finalizing", 5),
        ("completed", 5),
    ]


def test_listing_does_not_move_a_batch(server: ChatServer, client: httpx.Client) -> None:
    server.handler = lambda request: Answer(content="ok")
    batch = create(client, upload(client, openai_lines(1)))
    for _ in range(3):
        listed = client.get("/batches").json()["data"]
        assert [b["status"] for b in listed] == ["validating"]
    assert server.batch_lines == []
    assert poll(client, batch["id"])["status"] == "completed"
    assert len(server.batch_lines) == 1


# --- OpenAI: expiry, failure, cancellation -------------------------------------------


def test_an_expired_batch_keeps_what_ran(server: ChatServer, client: httpx.Client) -> None:
    server.handler = lambda request: Answer(content="ok")
    server.batch_script(BatchOutcome(expire_after=2))
    batch = create(client, upload(client, openai_lines(5)))
    shown = poll(client, batch["id"])
    assert shown["status"] == "expired"
    assert shown["expired_at"] >= shown["created_at"]
    assert shown["request_counts"] == {"total": 5, "completed": 2, "failed": 3}
    assert sorted(by_id(rows(client, shown["output_file_id"]))) == ["doc-0", "doc-1"]
    expired = by_id(rows(client, shown["error_file_id"]))
    assert sorted(expired) == ["doc-2", "doc-3", "doc-4"]
    for row in expired.values():
        assert row["response"] is None
        assert row["error"]["code"] == "batch_expired"
        assert "completion window expired" in row["error"]["message"]
    assert [r.custom_id for r in server.batch_lines] == ["doc-0", "doc-1"]


def test_a_batch_can_expire_before_anything_ran(server: ChatServer, client: httpx.Client) -> None:
    server.batch_script(BatchOutcome(polls=1, expire_after=0))
    batch = create(client, upload(client, openai_lines(2)))
    assert poll(client, batch["id"])["status"] == "in_progress"
    shown = poll(client, batch["id"])
    assert shown["status"] == "expired"
    assert "output_file_id" not in shown
    assert len(rows(client, shown["error_file_id"])) == 2
    assert server.batch_lines == []


def test_a_scripted_validation_failure(server: ChatServer, client: httpx.Client) -> None:
    server.batch_script(BatchOutcome(polls=1, fail="The input file is not allowed", fail_code="x"))
    batch = create(client, upload(client, openai_lines(2)))
    assert poll(client, batch["id"])["status"] == "validating"
    shown = poll(client, batch["id"])
    assert shown["status"] == "failed"
    assert shown["failed_at"] >= shown["created_at"]
    assert shown["errors"]["object"] == "list"
    assert shown["errors"]["data"] == [
        {"code": "x", "message": "The input file is not allowed", "param": None, "line": None}
    ]
    assert "output_file_id" not in shown and "error_file_id" not in shown
    assert shown["request_counts"] == {"total": 0, "completed": 0, "failed": 0}
    assert server.batch_lines == []


def test_cancelling_keeps_what_was_done(server: ChatServer, client: httpx.Client) -> None:
    server.handler = lambda request: Answer(content="ok")
    server.batch_script(BatchOutcome(polls=5, lines_per_poll=1, cancel_polls=1))
    batch = create(client, upload(client, openai_lines(3)))
    assert poll(client, batch["id"])["request_counts"]["completed"] == 1
    response = client.post(f"/batches/{batch['id']}/cancel")
    assert response.status_code == 200
    cancelling = valid("Batch", response.json())
    assert cancelling["status"] == "cancelling"
    assert cancelling["cancelling_at"] >= cancelling["created_at"]
    assert client.post(f"/batches/{batch['id']}/cancel").json()["status"] == "cancelling"
    assert poll(client, batch["id"])["status"] == "cancelling"
    shown = poll(client, batch["id"])
    assert shown["status"] == "cancelled"
    assert shown["request_counts"] == {"total": 3, "completed": 1, "failed": 2}
    assert list(by_id(rows(client, shown["output_file_id"]))) == ["doc-0"]
    unrun = by_id(rows(client, shown["error_file_id"]))
    assert sorted(unrun) == ["doc-1", "doc-2"]
    assert {row["error"]["code"] for row in unrun.values()} == {"batch_cancelled"}
    assert len(server.batch_lines) == 1  # nothing runs once a cancel is asked for
    late = client.post(f"/batches/{batch['id']}/cancel")
    assert "cancelled" in error_of(late, 400)["message"]


def test_unrun_lines_can_stay_out_of_the_error_file(
    server: ChatServer, client: httpx.Client
) -> None:
    server.batch_script(BatchOutcome(expire_after=0, unrun_in_error_file=False))
    batch = create(client, upload(client, openai_lines(2)))
    shown = poll(client, batch["id"])
    assert shown["status"] == "expired"
    assert shown["request_counts"] == {"total": 2, "completed": 0, "failed": 0}
    assert "output_file_id" not in shown and "error_file_id" not in shown


# --- OpenAI: limits and malformed input ------------------------------------------------


def failed_with(client: httpx.Client, data: bytes | list[Any]) -> list[dict[str, Any]]:
    batch = create(client, upload(client, data))
    shown = poll(client, batch["id"])
    assert shown["status"] == "failed", shown
    assert "output_file_id" not in shown
    data_errors = shown["errors"]["data"]
    for error in data_errors:
        valid("BatchError", error)
    return data_errors  # type: ignore[no-any-return]


def test_the_line_limit(server: ChatServer, client: httpx.Client) -> None:
    server.batch_max_lines = 2
    assert server.batch_max_lines == 2
    (error,) = failed_with(client, openai_lines(3))
    assert error["code"] == "too_many_tasks"
    assert "2" in error["message"]
    server.handler = lambda request: Answer(content="ok")
    batch = create(client, upload(client, openai_lines(2)))
    assert poll(client, batch["id"])["status"] == "completed"


def test_the_byte_limit() -> None:
    with ChatServer(batch_max_bytes=100) as server, httpx.Client(base_url=server.base_url) as http:
        assert server.batch_max_bytes == 100
        (error,) = failed_with(http, openai_lines(2))
        assert error["code"] == "file_too_large"
        assert "100" in error["message"]
        assert server.batch_lines == []


def test_the_default_limits_are_openais() -> None:
    server = ChatServer()
    assert (server.batch_max_lines, server.batch_max_bytes) == (50_000, 200 * 1024 * 1024)
    assert server.mistral_batch_max_lines == 1_000_000
    assert ChatServer(batch_max_lines=7).batch_max_lines == 7


GOOD = {"custom_id": "a", "method": "POST", "url": CHAT, "body": body(0)}


@pytest.mark.parametrize(
    ("bad", "code", "param"),
    [
        (b"{not json", "invalid_json_line", None),
        (b"[1, 2]", "invalid_json_line", None),
        (b"", "invalid_json_line", None),  # an empty line in the middle of the file
        ({**GOOD, "custom_id": "a"}, "duplicate_custom_id", "custom_id"),
        ({k: v for k, v in GOOD.items() if k != "custom_id"}, "missing_required_parameter", None),
        ({**GOOD, "custom_id": 7}, "invalid_request", "custom_id"),
        ({**GOOD, "custom_id": "b", "method": "GET"}, "invalid_request", "method"),
        ({**GOOD, "custom_id": "b", "url": "/v1/embeddings"}, "url_mismatch", "url"),
        ({**GOOD, "custom_id": "b", "body": None}, "missing_required_parameter", "body"),
        ({**GOOD, "custom_id": "b", "body": "hi"}, "invalid_request", "body"),
        ({**GOOD, "custom_id": "b", "body": body(1, None)}, "missing_required_parameter", None),
        ({**GOOD, "custom_id": "b", "body": body(1, "other")}, "model_mismatch", "body.model"),
    ],
)
def test_a_malformed_line_fails_the_batch(
    server: ChatServer, client: httpx.Client, bad: Any, code: str, param: str | None
) -> None:
    line = bad if isinstance(bad, bytes) else json.dumps(bad).encode()
    data = json.dumps(GOOD).encode() + b"\n" + line + b"\n" + jsonl(openai_lines(1))
    (error,) = failed_with(client, data)
    assert error["code"] == code
    assert error["line"] == 2
    if param is not None:
        assert error["param"] == param
    assert server.batch_lines == []


def test_every_bad_line_is_reported(client: httpx.Client) -> None:
    data = b"nope\n" + jsonl(openai_lines(1)) + b"[]\r\n" + jsonl(openai_lines(1))
    errors = failed_with(client, data)
    assert [(e["code"], e["line"]) for e in errors] == [
        ("invalid_json_line", 1),
        ("invalid_json_line", 3),
        ("duplicate_custom_id", 4),
    ]


def test_an_empty_file_fails(client: httpx.Client) -> None:
    (error,) = failed_with(client, b"")
    assert error["code"] == "empty_file"


def test_crlf_and_a_missing_final_newline_are_fine(
    server: ChatServer, client: httpx.Client
) -> None:
    server.handler = lambda request: Answer(content="ok")
    first, second = (json.dumps(line).encode() for line in openai_lines(2))
    batch = create(client, upload(client, first + b"\r\n" + second))
    shown = poll(client, batch["id"])
    assert shown["status"] == "completed"
    assert shown["request_counts"]["completed"] == 2
    assert server.batch_lines[0].raw == first


# --- OpenAI: request errors and the list -----------------------------------------------


def test_bad_create_requests(client: httpx.Client) -> None:
    file_id = upload(client, openai_lines(1))
    tune = upload(client, openai_lines(1), purpose="fine-tune")
    base = {"input_file_id": file_id, "endpoint": CHAT, "completion_window": "24h"}
    for missing in base:
        request = {k: v for k, v in base.items() if k != missing}
        assert error_of(client.post("/batches", json=request), 400)["param"] == missing
    cases: list[tuple[dict[str, Any], int]] = [
        ({**base, "endpoint": "/v1/nope"}, 400),
        ({**base, "endpoint": "/v1/embeddings"}, 400),
        ({**base, "completion_window": "48h"}, 400),
        ({**base, "metadata": {"k": 1}}, 400),
        ({**base, "metadata": {str(i): "v" for i in range(17)}}, 400),
        ({**base, "input_file_id": "file-missing"}, 404),
        ({**base, "input_file_id": tune}, 400),
    ]
    for request, status in cases:
        error_of(client.post("/batches", json=request), status)
    error_of(client.post("/batches", content=b"{", headers={"content-type": "json"}), 400)
    error_of(client.post("/batches", json=[1]), 400)
    assert client.get("/batches").json()["data"] == []


def test_unknown_ids_and_wrong_methods(client: httpx.Client) -> None:
    error_of(client.get("/batches/batch_nope"), 404)
    error_of(client.post("/batches/batch_nope/cancel"), 404)
    error_of(client.get("/files/file-nope"), 404)
    error_of(client.get("/files/file-nope/content"), 404)
    error_of(client.delete("/files/file-nope"), 404)
    error_of(client.get("/batches/x/y/z"), 404)
    for method, path, allow in [
        ("PUT", "/batches", "GET, POST"),
        ("DELETE", "/batches/batch_x", "GET"),
        ("GET", "/batches/batch_x/cancel", "POST"),
        ("PUT", "/files", "GET, POST"),
        ("POST", "/files/file-x", "GET, DELETE"),
        ("DELETE", "/files/file-x/content", "GET"),
        ("PATCH", "/batch/jobs", "GET, POST"),
        ("DELETE", "/batch/jobs/x", "GET"),
        ("GET", "/batch/jobs/x/cancel", "POST"),
    ]:
        response = client.request(method, path)
        error_of(response, 405)
        assert response.headers["allow"] == allow


def test_listing_batches(server: ChatServer, client: httpx.Client) -> None:
    file_id = upload(client, openai_lines(1))
    made = [create(client, file_id)["id"] for _ in range(5)]
    page = client.get("/batches", params={"limit": 2}).json()
    assert page["object"] == "list"
    assert [b["id"] for b in page["data"]] == [made[4], made[3]]
    assert (page["first_id"], page["last_id"], page["has_more"]) == (made[4], made[3], True)
    for batch in page["data"]:
        valid("Batch", batch)
    rest = client.get("/batches", params={"limit": 2, "after": page["last_id"]}).json()
    assert [b["id"] for b in rest["data"]] == [made[2], made[1]]
    last = client.get("/batches", params={"after": rest["last_id"]}).json()
    assert [b["id"] for b in last["data"]] == [made[0]]
    assert last["has_more"] is False
    assert len(client.get("/batches").json()["data"]) == 5  # default limit 20
    for limit in ("0", "101", "x"):
        assert error_of(client.get("/batches", params={"limit": limit}), 400)["param"] == "limit"
    error_of(client.get("/batches", params={"after": "batch_unknown"}), 400)
    assert client.get("/batch/jobs").json()["data"] == []  # the two shapes list apart


# --- files ----------------------------------------------------------------------------


def test_files_can_be_read_and_deleted(server: ChatServer, client: httpx.Client) -> None:
    data = jsonl(openai_lines(2))
    file_id = upload(client, data)
    shown = client.get(f"/files/{file_id}").json()
    assert (shown["id"], shown["bytes"], shown["purpose"]) == (file_id, len(data), "batch")
    assert shown["num_lines"] == 2  # Mistral's field, on the shared endpoint
    content = client.get(f"/files/{file_id}/content")
    assert content.content == data
    assert content.headers["content-type"] == "application/octet-stream"
    assert server.file_content(file_id) == data
    deleted = client.delete(f"/files/{file_id}")
    assert deleted.json() == {"id": file_id, "object": "file", "deleted": True}
    error_of(client.get(f"/files/{file_id}"), 404)
    with pytest.raises(KeyError):
        server.file_content(file_id)


def test_listing_files(server: ChatServer, client: httpx.Client) -> None:
    first = upload(client, openai_lines(1))
    tune = upload(client, openai_lines(1), purpose="fine-tune")
    last = upload(client, openai_lines(1))
    listed = client.get("/files").json()
    assert [f["id"] for f in listed["data"]] == [last, tune, first]
    assert (listed["object"], listed["total"], listed["has_more"]) == ("list", 3, False)
    batch_files = client.get("/files", params={"purpose": "batch", "order": "asc"}).json()
    assert [f["id"] for f in batch_files["data"]] == [first, last]
    page = client.get("/files", params={"limit": 1, "after": last}).json()
    assert ([f["id"] for f in page["data"]], page["has_more"]) == ([tune], True)
    for params in ({"limit": "0"}, {"order": "up"}, {"after": "file-none"}):
        error_of(client.get("/files", params=params), 400)


def test_a_batch_outlives_its_deleted_input_file(server: ChatServer, client: httpx.Client) -> None:
    server.handler = lambda request: Answer(content="ok")
    file_id = upload(client, openai_lines(2))
    batch = create(client, file_id)
    client.delete(f"/files/{file_id}")
    assert poll(client, batch["id"])["request_counts"]["completed"] == 2


def test_bad_uploads(client: httpx.Client) -> None:
    error_of(client.post("/files", json={"purpose": "batch"}), 400)
    error_of(client.post("/files", data={"purpose": "batch"}, files={"other": b"x"}), 400)
    missing = client.post("/files", files={"file": ("a.jsonl", b"{}\n")})
    assert error_of(missing, 400)["param"] == "purpose"
    wrong = client.post("/files", files={"file": ("a.jsonl", b"{}\n")}, data={"purpose": "x"})
    assert error_of(wrong, 400)["param"] == "purpose"
    headers = {"content-type": "multipart/form-data"}
    error_of(client.post("/files", content=b"--x\r\n", headers=headers), 400)
    headers = {"content-type": "multipart/form-data; boundary=zz"}
    error_of(client.post("/files", content=b"no boundary here", headers=headers), 400)
    error_of(client.post("/files", content=b"--zz\r\nbroken", headers=headers), 400)


def test_a_large_file_round_trips(server: ChatServer, client: httpx.Client) -> None:
    line = {**GOOD, "body": {**body(0), "padding": "x" * 10_000}}
    lines = [{**line, "custom_id": str(i)} for i in range(800)]  # about 8 MB
    data = jsonl(lines)
    file_id = upload(client, data)
    assert client.get(f"/files/{file_id}").json()["bytes"] == len(data)
    assert client.get(f"/files/{file_id}/content").content == data
    server.handler = lambda request: Answer(content="ok")
    batch = create(client, file_id)
    shown = poll(client, batch["id"])
    assert shown["request_counts"] == {"total": 800, "completed": 800, "failed": 0}
    assert len(rows(client, shown["output_file_id"], check=False)) == 800


# --- scripting -------------------------------------------------------------------------


def test_a_batch_handler_chooses_outcomes(server: ChatServer, client: httpx.Client) -> None:
    seen: list[BatchSubmission] = []

    def choose(submission: BatchSubmission) -> BatchOutcome:
        seen.append(submission)
        return BatchOutcome(expire_after=1) if submission.api == "mistral" else BatchOutcome()

    server.batch_handler = choose
    server.handler = lambda request: Answer(content=request.custom_id or "")
    batch = create(client, upload(client, openai_lines(2)), metadata={"k": "v"})
    job = create_job(client, [upload(client, mistral_lines(2))])
    assert poll(client, batch["id"])["status"] == "completed"
    assert poll_job(client, job["id"])["status"] == "TIMEOUT_EXCEEDED"
    openai, mistral = seen
    assert (openai.id, openai.api, openai.model) == (batch["id"], "openai", "gpt-test")
    assert openai.custom_ids == ("doc-0", "doc-1")
    assert openai.metadata == {"k": "v"}
    assert openai.endpoint == CHAT
    assert (mistral.id, mistral.api, mistral.model) == (job["id"], "mistral", job["model"])
    assert mistral.input_file_ids == tuple(job["input_files"])
    outputs = rows(client, poll(client, batch["id"])["output_file_id"])
    contents = {r["custom_id"]: r["response"]["body"]["choices"][0]["message"] for r in outputs}
    assert contents["doc-1"]["content"] == "doc-1"


def test_a_batch_handler_sees_validation_errors(server: ChatServer, client: httpx.Client) -> None:
    seen: list[BatchSubmission] = []

    def choose(submission: BatchSubmission) -> BatchOutcome:
        seen.append(submission)
        return BatchOutcome()

    server.batch_handler = choose
    failed_with(client, b"nope\n")
    assert seen[0].errors == ("This line is not parseable as valid JSON.",)
    assert seen[0].custom_ids == ()


def test_a_broken_batch_handler_is_loud(server: ChatServer, client: httpx.Client) -> None:
    file_id = upload(client, openai_lines(1))
    request = {"input_file_id": file_id, "endpoint": CHAT, "completion_window": "24h"}

    def broken(submission: BatchSubmission) -> BatchOutcome:
        raise RuntimeError("boom")

    server.batch_handler = broken
    assert "boom" in error_of(client.post("/batches", json=request), 500)["message"]
    server.batch_handler = lambda submission: "completed"  # type: ignore[assignment,return-value]
    error_of(client.post("/batches", json=request), 500)
    assert client.get("/batches").json()["data"] == []


def test_outcomes_are_checked() -> None:
    with pytest.raises(ValueError, match="expire_after"):
        BatchOutcome(expire_after=0.5)  # type: ignore[arg-type]
    bad: dict[str, Any]
    for bad in ({"polls": -1}, {"lines_per_poll": 0}, {"cancel_polls": True}, {"fail": 3}):
        with pytest.raises(ValueError, match="BatchOutcome"):
            BatchOutcome(**bad)
    with pytest.raises(TypeError):
        ChatServer().batch_script("completed")  # type: ignore[arg-type]


def test_chat_items_inside_a_batch(server: ChatServer, client: httpx.Client) -> None:
    server.script(
        Delay(30, Answer(content="late")),  # no sleeping inside a batch
        Drop(),
        Raw(b'{"odd": true}', status=200),
        Raw(b"not json", status=502),
        lambda request: Fault(400, body={"error": {"message": "bad", "type": "x"}}),
        Fault(503, body="upstream down"),
    )
    batch = create(client, upload(client, openai_lines(7)))
    started = time.monotonic()
    shown = poll(client, batch["id"])
    assert time.monotonic() - started < 5
    assert shown["request_counts"] == {"total": 7, "completed": 2, "failed": 5}
    outputs = by_id(rows(client, shown["output_file_id"]))
    assert outputs["doc-0"]["response"]["body"]["choices"][0]["message"]["content"] == "late"
    assert outputs["doc-2"]["response"]["body"] == {"odd": True}
    errors = by_id(rows(client, shown["error_file_id"], check=False))
    assert errors["doc-1"]["response"] is None
    assert errors["doc-1"]["error"]["code"] == "server_error"
    valid("BatchRequestOutput", errors["doc-1"])
    assert errors["doc-3"]["response"] == {
        "status_code": 502,
        "request_id": errors["doc-3"]["response"]["request_id"],
        "body": "not json",  # not an object: the one line the schema cannot describe
    }
    assert errors["doc-4"]["response"]["body"]["error"]["message"] == "bad"
    assert errors["doc-5"]["response"]["status_code"] == 503
    assert errors["doc-6"]["response"]["status_code"] == 500  # the script ran out
    assert "no scripted answer" in errors["doc-6"]["response"]["body"]["error"]["message"]


def test_shuffled_results(server: ChatServer, client: httpx.Client) -> None:
    server.handler = lambda request: Answer(content="ok")
    server.batch_script(BatchOutcome(shuffle=True))
    batch = create(client, upload(client, openai_lines(30)))
    found = [r["custom_id"] for r in rows(client, poll(client, batch["id"])["output_file_id"])]
    assert sorted(found) == sorted(f"doc-{i}" for i in range(30))
    assert found != [f"doc-{i}" for i in range(30)]


def test_no_document_is_submitted_twice(server: ChatServer, client: httpx.Client) -> None:
    """A client that resubmits only the failures: the per-custom_id record proves it."""
    server.script(*[Fault(500) if i % 3 == 0 else Answer(content="ok") for i in range(9)])
    first = create(client, upload(client, openai_lines(9)))
    errors = rows(client, poll(client, first["id"])["error_file_id"])
    again = [line for line in openai_lines(9) if line["custom_id"] in by_id(errors)]
    server.handler = lambda request: Answer(content="ok")
    second = create(client, upload(client, again))
    assert poll(client, second["id"])["request_counts"]["completed"] == 3
    per_document = Counter(request.custom_id for request in server.batch_lines)
    assert per_document == Counter({f"doc-{i}": (2 if i % 3 == 0 else 1) for i in range(9)})
    retried = {r.custom_id for r in server.batch_lines if r.batch_id == second["id"]}
    assert retried == {"doc-0", "doc-3", "doc-6"}


def test_concurrent_polls_run_each_line_once(server: ChatServer, client: httpx.Client) -> None:
    server.handler = lambda request: Answer(content="ok")
    server.batch_script(*[BatchOutcome(polls=4, lines_per_poll=3) for _ in range(4)])
    batches = [create(client, upload(client, openai_lines(20, prefix=f"b{n}"))) for n in range(4)]

    def hammer(batch_id: str) -> None:
        with httpx.Client(base_url=server.base_url, timeout=10.0) as http:
            for _ in range(10):
                assert http.get(f"/batches/{batch_id}").status_code == 200

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(hammer, [b["id"] for b in batches for _ in range(2)]))
    counts = Counter(r.custom_id for r in server.batch_lines)
    assert len(counts) == 80
    assert set(counts.values()) == {1}
    for batch in batches:
        assert poll(client, batch["id"])["request_counts"]["completed"] == 20


def handler_of(server: ChatServer) -> object:
    # Read through a function: mypy would keep `batch_handler` narrowed across reset().
    return server.batch_handler


def test_reset_forgets_scripts_but_keeps_files(server: ChatServer, client: httpx.Client) -> None:
    file_id = upload(client, openai_lines(1))
    server.batch_script(BatchOutcome(polls=3))
    server.batch_handler = lambda submission: BatchOutcome()
    server.handler = lambda request: Answer(content="ok")
    poll(client, create(client, file_id)["id"])
    assert server.batch_lines and server.batch_calls
    server.reset()
    assert server.pending_batch_outcomes == 0
    assert handler_of(server) is None
    assert server.batch_lines == [] and server.batch_calls == []
    assert client.get(f"/files/{file_id}").status_code == 200


def test_batch_calls_are_recorded_with_their_headers(
    server: ChatServer, client: httpx.Client
) -> None:
    file_id = upload(client, openai_lines(1))
    client.post(
        "/batches",
        json={"input_file_id": file_id, "endpoint": CHAT, "completion_window": "24h"},
        headers={"Authorization": "Bearer sk-secret"},
    )
    calls: list[RecordedRequest] = server.batch_calls
    upload_call, create_call = calls
    assert upload_call.body is None
    assert b"doc-0" in upload_call.raw
    assert create_call.body is not None
    assert create_call.body["input_file_id"] == file_id
    assert create_call.headers["authorization"] == "Bearer sk-secret"
    assert "sk-secret" not in repr(create_call)


# --- Mistral ------------------------------------------------------------------------


def test_mistral_round_trip(server: ChatServer, client: httpx.Client) -> None:
    first = upload(client, mistral_lines(2))
    second = upload(client, mistral_lines(1, prefix="more"))
    stored = client.get(f"/files/{first}").json()
    assert (stored["sample_type"], stored["source"], stored["num_lines"]) == (
        "batch_request",
        "upload",
        2,
    )
    server.script(Answer(content="a"), Fault(400), Answer(content="c"))
    job = create_job(client, [first, second], metadata={"job_type": "testing"}, timeout_hours=48)
    assert job["status"] == "QUEUED"
    assert job["object"] == "batch"
    assert job["input_files"] == [first, second]
    assert job["metadata"] == {"job_type": "testing"}
    assert job["endpoint"] == CHAT
    assert (job["output_file"], job["error_file"], job["started_at"]) == (None, None, None)
    assert job["errors"] == []
    assert job["total_requests"] == 0

    done = poll_job(client, job["id"])
    assert done["status"] == "SUCCESS"
    counts = {
        k: done[k]
        for k in ("total_requests", "completed_requests", "succeeded_requests", "failed_requests")
    }
    assert counts == {
        "total_requests": 3,
        "completed_requests": 3,
        "succeeded_requests": 2,
        "failed_requests": 1,
    }
    assert done["errors"] == [{"message": "HTTP Error, status code: 400", "count": 1}]
    assert done["completed_at"] >= done["started_at"] >= done["created_at"]

    outputs = by_id(rows(client, done["output_file"]))
    assert sorted(outputs) == ["doc-0", "more-0"]
    row = outputs["doc-0"]
    assert row["id"].startswith("batch-")
    assert row["error"] is None
    assert "request_id" not in row["response"]
    completion = row["response"]["body"]
    assert completion["model"] == "mistral-small-latest"  # the job's model answers
    assert completion["choices"][0]["message"]["content"] == "a"
    errors = by_id(rows(client, done["error_file"]))
    assert errors["doc-1"]["response"]["status_code"] == 400
    output_file = client.get(f"/files/{done['output_file']}").json()
    assert (output_file["sample_type"], output_file["source"]) == ("batch_result", "mistral")
    assert client.get(f"/files/{done['error_file']}").json()["sample_type"] == "batch_error"

    recorded = server.batch_lines
    assert [r.custom_id for r in recorded] == ["doc-0", "doc-1", "more-0"]
    assert {r.batch_id for r in recorded} == {job["id"]}
    assert recorded[0].body == mistral_lines(1)[0]["body"]  # the line as sent, no model
    assert recorded[0].path == CHAT


def test_mistral_statuses(server: ChatServer, client: httpx.Client) -> None:
    server.handler = lambda request: Answer(content="ok")
    server.batch_script(BatchOutcome(polls=2, lines_per_poll=1))
    job = create_job(client, [upload(client, mistral_lines(3))])
    seen = [(job["status"], job["succeeded_requests"])]
    while seen[-1][0] != "SUCCESS":
        shown = poll_job(client, job["id"])
        seen.append((shown["status"], shown["succeeded_requests"]))
    assert seen == [("QUEUED", 0), ("RUNNING", 1), ("RUNNING", 2), ("SUCCESS", 3)]
    assert shown["error_file"] is None


def test_mistral_timeout_keeps_what_ran(server: ChatServer, client: httpx.Client) -> None:
    server.handler = lambda request: Answer(content="ok")
    server.batch_script(BatchOutcome(expire_after=1))
    job = create_job(client, [upload(client, mistral_lines(3))])
    shown = poll_job(client, job["id"])
    assert shown["status"] == "TIMEOUT_EXCEEDED"
    assert (shown["total_requests"], shown["completed_requests"]) == (3, 1)
    assert list(by_id(rows(client, shown["output_file"]))) == ["doc-0"]
    assert shown["error_file"] is None  # lines never run are only counted


def test_mistral_cancel_before_start_is_immediate(server: ChatServer, client: httpx.Client) -> None:
    job = create_job(client, [upload(client, mistral_lines(2))])
    cancelled = client.post(f"/batch/jobs/{job['id']}/cancel").json()
    assert cancelled["status"] == "CANCELLED"
    assert cancelled["total_requests"] == cancelled["completed_requests"] == 0
    assert cancelled["output_file"] is None
    assert poll_job(client, job["id"])["status"] == "CANCELLED"
    assert server.batch_lines == []
    error_of(client.post(f"/batch/jobs/{job['id']}/cancel"), 400)


def test_mistral_cancel_while_running(server: ChatServer, client: httpx.Client) -> None:
    server.handler = lambda request: Answer(content="ok")
    server.batch_script(BatchOutcome(polls=3, lines_per_poll=2))
    job = create_job(client, [upload(client, mistral_lines(5))])
    assert poll_job(client, job["id"])["status"] == "RUNNING"
    requested = client.post(f"/batch/jobs/{job['id']}/cancel").json()
    assert requested["status"] == "CANCELLATION_REQUESTED"
    shown = poll_job(client, job["id"])
    assert shown["status"] == "CANCELLED"
    assert (shown["total_requests"], shown["succeeded_requests"]) == (5, 2)
    assert sorted(by_id(rows(client, shown["output_file"]))) == ["doc-0", "doc-1"]


def test_mistral_failures(server: ChatServer, client: httpx.Client) -> None:
    bad = upload(client, jsonl(mistral_lines(1)) + b"oops\n" + jsonl(mistral_lines(1)))
    job = create_job(client, [bad])
    shown = poll_job(client, job["id"])
    assert shown["status"] == "FAILED"
    messages = [error["message"] for error in shown["errors"]]
    assert len(messages) == 2
    assert "Line 2" in messages[0] and "not valid JSON" in messages[0]
    assert "duplicate custom_id" in messages[1]
    assert all(error["count"] == 1 for error in shown["errors"])
    assert shown["output_file"] is None

    server.batch_script(BatchOutcome(fail="model not allowed"))
    job = create_job(client, [upload(client, mistral_lines(1))])
    shown = poll_job(client, job["id"])
    assert (shown["status"], shown["errors"]) == (
        "FAILED",
        [{"message": "model not allowed", "count": 1}],
    )
    server.mistral_batch_max_lines = 1
    job = create_job(client, [upload(client, mistral_lines(2))])
    assert poll_job(client, job["id"])["status"] == "FAILED"
    assert server.batch_lines == []


def test_mistral_bad_create_requests(client: httpx.Client) -> None:
    file_id = upload(client, mistral_lines(1))
    base = {"input_files": [file_id], "model": "m", "endpoint": CHAT}
    for missing in base:
        request = {k: v for k, v in base.items() if k != missing}
        error_of(client.post("/batch/jobs", json=request), 400)
    cases: list[tuple[dict[str, Any], int]] = [
        ({**base, "input_files": []}, 400),
        ({**base, "input_files": ["nope"]}, 404),
        ({**base, "endpoint": "/v1/ocr"}, 400),
        ({**base, "endpoint": "/v1/responses"}, 400),
        ({**base, "timeout_hours": 0}, 400),
        ({**base, "timeout_hours": 169}, 400),
        ({**base, "metadata": {"k": 1}}, 400),
        ({"requests": [{"custom_id": "a", "body": {}}], "model": "m", "endpoint": CHAT}, 400),
    ]
    for request, status in cases:
        error_of(client.post("/batch/jobs", json=request), status)
    error_of(client.get("/batch/jobs/nope"), 404)
    error_of(client.post("/batch/jobs/nope/cancel"), 404)
    error_of(client.get(f"/batches/{create_job(client, [file_id])['id']}"), 404)


def test_mistral_list_and_filters(server: ChatServer, client: httpx.Client) -> None:
    file_id = upload(client, mistral_lines(1))
    server.handler = lambda request: Answer(content="ok")
    a = create_job(client, [file_id], metadata={"job_type": "testing"})
    b = create_job(client, [file_id], metadata={"job_type": "prod"}, model="other")
    c = create_job(client, [file_id])
    poll_job(client, a["id"])

    def ids(**params: Any) -> list[str]:
        listed = client.get("/batch/jobs", params=params).json()
        assert listed["object"] == "list"
        assert listed["total"] >= len(listed["data"])
        return [job["id"] for job in listed["data"]]

    assert ids() == [c["id"], b["id"], a["id"]]
    assert ids(order_by="created") == [a["id"], b["id"], c["id"]]
    assert ids(status="SUCCESS") == [a["id"]]
    assert ids(status=["QUEUED", "SUCCESS"]) == [c["id"], b["id"], a["id"]]
    assert ids(job_type="testing") == [a["id"]]
    assert ids(metadata=json.dumps({"job_type": "prod"})) == [b["id"]]
    assert ids(model="other") == [b["id"]]
    assert ids(page_size=2) == [c["id"], b["id"]]
    assert ids(page_size=2, page=1) == [a["id"]]
    assert client.get("/batch/jobs", params={"page_size": 1}).json()["total"] == 3
    assert ids(created_after="2000-01-01T00:00:00Z") == [c["id"], b["id"], a["id"]]
    assert ids(created_after="2999-01-01T00:00:00") == []
    for params in (
        {"page": "-1"},
        {"page_size": "0"},
        {"order_by": "name"},
        {"metadata": "[1]"},
        {"created_after": "soon"},
    ):
        error_of(client.get("/batch/jobs", params=params), 400)


def test_one_script_serves_both_shapes_in_order(server: ChatServer, client: httpx.Client) -> None:
    server.batch_script(BatchOutcome(polls=1), BatchOutcome(fail="no"))
    server.handler = lambda request: Answer(content="ok")
    job = create_job(client, [upload(client, mistral_lines(1))])
    batch = create(client, upload(client, openai_lines(1)))
    assert poll_job(client, job["id"])["status"] == "RUNNING"
    assert poll(client, batch["id"])["status"] == "failed"
    assert poll_job(client, job["id"])["status"] == "SUCCESS"


def test_the_chat_path_still_works_beside_batches(server: ChatServer, client: httpx.Client) -> None:
    server.script(Answer(content="online"))
    batch = create(client, upload(client, openai_lines(1)))
    response = client.post("/chat/completions", json=body(0))
    assert response.json()["choices"][0]["message"]["content"] == "online"
    assert len(server.requests) == 1
    shown = poll(client, batch["id"])
    assert shown["request_counts"]["failed"] == 1  # the script was used up online
