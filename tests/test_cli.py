"""Tests for the `extractor` command line, run in-process through `main` against a real
loopback server (the `server` fixture of conftest.py: an extractor.testing.ChatServer
whose received bodies are checked against OpenAI's request schema), and as a real
subprocess for the entry point and Ctrl-C."""

from __future__ import annotations

import importlib
import io
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

import extractor
from extractor._cli import main
from extractor._schema import compile_schema
from extractor.testing import Answer, ChatServer, Delay, Item, RecordedRequest
from schemas.receipt import Receipt
from tests.processes import KEY_ENVS, ROOT, child_env, command, spawn

ANN_FILE = "samples/contacts/ann.txt"
CAFE_FILE = "samples/receipts/corner-cafe.txt"

ANN = {
    "name": "Ann Lee",
    "email": "ann.lee@northwind-ceramics.example",
    "phone": "+31 10 555 0142",
    "organization": "Northwind Ceramics B.V.",
    "role": "Head of Procurement",
}
CAFE = {
    "company": "CORNER CAFE & BAKERY",
    "date": "07/11/2023",
    "address": "12 HARBOUR ROAD, UNIT 3 PORT ELLEN, ISLAY PA42 7DQ",
    "total": "9.00",
}


@pytest.fixture(autouse=True)
def _hermetic(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run from the repository root, with no model or key from the caller's environment."""
    monkeypatch.chdir(ROOT)
    monkeypatch.syspath_prepend(str(ROOT))
    for name in (*KEY_ENVS, "EXTRACTOR_MODEL"):
        monkeypatch.delenv(name, raising=False)


def document_of(request: RecordedRequest) -> str:
    """The document the CLI sent: the first user message that is not a worked example."""
    shown = {text for text, _ in compile_schema(Receipt).examples}
    return next(
        str(m["content"])
        for m in request.messages
        if m.get("role") == "user" and m["content"] not in shown
    )


def answers(by_marker: dict[str, Any]) -> Any:
    """A handler answering the record whose marker occurs in the document (else not JSON)."""

    def handle(request: RecordedRequest) -> Item:
        document = document_of(request)
        for marker, record in by_marker.items():
            if marker in document:
                if request.tools:
                    return Answer(tool_call=record)
                return Answer(content=json.dumps(record))
        return Answer(content="Sorry, I cannot find anything like that.")

    return handle


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def extract_argv(server: ChatServer, schema: str, *rest: str) -> list[str]:
    flags = ["--model", "openai/test-model", "--base-url", server.base_url]
    return ["extract", schema, *rest, *flags]


def lines(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines()]


# --- extract --------------------------------------------------------------------------------


def test_extract_prints_one_json_line_per_file(
    server: ChatServer, capsys: pytest.CaptureFixture[str]
) -> None:
    server.handler = answers({"Ann Lee": ANN, "CORNER CAFE": CAFE})
    code, out, err = run(capsys, *extract_argv(server, "schemas/receipt.py:Receipt", CAFE_FILE))
    assert (code, err) == (0, "")
    assert lines(out) == [{"file": CAFE_FILE, "record": CAFE}]

    partial = {"name": "Ann Lee", "email": ANN["email"]}  # optional fields left out
    server.handler = answers({"Ann Lee": partial})
    code, out, _ = run(capsys, *extract_argv(server, "schemas.contact:Contact", ANN_FILE, ANN_FILE))
    assert code == 0
    record = {**dict.fromkeys(ANN), **partial}  # model_dump: unset optionals are null
    assert lines(out) == [{"file": ANN_FILE, "record": record}] * 2
    body = server.requests[-1].body or {}
    assert body["model"] == "test-model"
    assert body["response_format"]["json_schema"]["name"] == "Contact"


def test_list_and_date_targets_are_dumped_as_json(
    server: ChatServer, capsys: pytest.CaptureFixture[str]
) -> None:
    server.handler = answers({"Ann Lee": {"items": [ANN, {"name": "Marek"}]}})
    code, out, _ = run(capsys, *extract_argv(server, "schemas.contact:Contacts", ANN_FILE))
    assert code == 0
    assert lines(out)[0]["record"] == [ANN, {**dict.fromkeys(ANN), "name": "Marek"}]

    invoice = {
        "number": "SB-2024-031",
        "issue_date": "2024-03-05",
        "due_date": None,
        "seller": "Studio Brandt",
        "buyer": "Halcyon Press Ltd",
        "currency": "EUR",
        "line_items": [{"description": "Cover", "quantity": 1, "unit_price": 850, "amount": 850}],
        "total": 1600,
    }
    server.handler = answers({"STUDIO BRANDT": invoice})
    argv = extract_argv(server, "schemas/invoice.py:Invoice", "samples/invoices/studio-brandt.txt")
    code, out, _ = run(capsys, *argv)
    assert code == 0
    record = lines(out)[0]["record"]
    assert record["issue_date"] == "2024-03-05"
    assert record["total"] == 1600.0
    assert record["line_items"][0] == {
        "description": "Cover",
        "quantity": 1.0,
        "unit_price": 850.0,
        "amount": 850.0,
    }


def test_failing_file_gets_an_error_line_and_the_others_still_run(
    server: ChatServer, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    broken = tmp_path / "broken.txt"
    broken.write_text("A note with no receipt in it at all.\n", encoding="utf-8")
    server.handler = answers({"CORNER CAFE": CAFE})  # anything else: not JSON, every time
    argv = extract_argv(server, "schemas/receipt.py:Receipt", str(broken), CAFE_FILE)
    code, out, _ = run(capsys, *argv, "--max-retries", "1")
    assert code == 1
    failed, ok = lines(out)
    assert failed["file"] == str(broken)
    assert failed["record"] is None
    assert failed["error"]["type"] == "RetriesExhausted"
    assert "2 attempt" in failed["error"]["message"]
    assert ok == {"file": CAFE_FILE, "record": CAFE}
    assert len(server.requests) == 3  # two attempts for the broken file, one for the other


def test_params_arrive_in_the_request_body(
    server: ChatServer, capsys: pytest.CaptureFixture[str]
) -> None:
    server.handler = answers({"CORNER CAFE": CAFE})
    argv = extract_argv(server, "schemas/receipt.py:Receipt", CAFE_FILE)
    params = ["--param", "temperature=0", "--param", 'stop=["\\n"]', "--param", "seed=7"]
    code, _, _ = run(capsys, *argv, *params)
    assert code == 0
    body = server.requests[0].body or {}
    assert body["temperature"] == 0
    assert body["stop"] == ["\n"]
    assert body["seed"] == 7


def test_param_values_that_are_not_json_are_text(
    server: ChatServer, capsys: pytest.CaptureFixture[str]
) -> None:
    server.handler = answers({"CORNER CAFE": CAFE})
    argv = extract_argv(server, "schemas/receipt.py:Receipt", CAFE_FILE)
    code, _, _ = run(capsys, *argv, "--param", "stop=END", "--param", "stop=THANK YOU")
    assert code == 0
    assert (server.requests[0].body or {})["stop"] == ["THANK YOU"]  # the last one wins


def test_mode_tools_sends_the_schema_as_a_tool(
    server: ChatServer, capsys: pytest.CaptureFixture[str]
) -> None:
    server.handler = answers({"Ann Lee": ANN})
    code, out, _ = run(
        capsys, *extract_argv(server, "schemas/contact.py:Contact", ANN_FILE), "--mode", "tools"
    )
    assert code == 0
    assert lines(out) == [{"file": ANN_FILE, "record": ANN}]
    request = server.requests[0]
    assert [t["function"]["name"] for t in request.tools] == ["Contact"]
    assert request.response_format is None


def test_stdin_is_read_for_a_dash(
    server: ChatServer, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    text = (ROOT / ANN_FILE).read_bytes()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(text), encoding="utf-8"))
    server.handler = answers({"Ann Lee": ANN})
    code, out, _ = run(capsys, *extract_argv(server, "schemas/contact.py:Contact", "-"))
    assert code == 0
    assert lines(out) == [{"file": "-", "record": ANN}]
    assert document_of(server.requests[0]) == text.decode()


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "empty"), (b" \n\t\n", "empty"), (b"Caf\xe9 receipt", "not UTF-8")],
)
def test_unusable_file_gets_an_error_line(
    server: ChatServer,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    content: bytes,
    message: str,
) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_bytes(content)
    server.handler = answers({"CORNER CAFE": CAFE})
    argv = extract_argv(server, "schemas/receipt.py:Receipt", str(bad), CAFE_FILE)
    code, out, _ = run(capsys, *argv)
    assert code == 1
    failed, ok = lines(out)
    assert failed["record"] is None
    assert failed["error"]["type"] == "InputError"
    assert message in failed["error"]["message"]
    assert ok == {"file": CAFE_FILE, "record": CAFE}
    assert len(server.requests) == 1  # nothing was sent for the unusable file


@pytest.mark.parametrize("before", [True, False], ids=["before-command", "after-command"])
def test_verbose_logs_to_stderr_and_cleans_up(
    server: ChatServer, capsys: pytest.CaptureFixture[str], before: bool
) -> None:
    handlers = list(logging.getLogger("extractor").handlers)
    server.handler = answers({"CORNER CAFE": CAFE})
    argv = extract_argv(server, "schemas/receipt.py:Receipt", CAFE_FILE)
    code, _, err = run(capsys, *(["-v", *argv] if before else [*argv, "-v"]))
    assert code == 0
    assert f"extractor: {CAFE_FILE}: record from openai/test-model" in err
    assert logging.getLogger("extractor").handlers == handlers
    code, _, err = run(capsys, *extract_argv(server, "schemas/receipt.py:Receipt", CAFE_FILE))
    assert (code, err) == (0, "")


# --- usage and configuration errors: exit 2, nothing sent -----------------------------------


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--param", "temprature=0"], "'temprature'"),
        (["--param", "model=openai/other"], "parameter 'model'"),
        (["--param", "temperature=7"], "'temperature'"),
        (["--param", "api_key=sk-123"], "environment"),
        (["--param", "temperature"], "NAME=VALUE"),
        (["--mode", "fastest"], "invalid choice: 'fastest'"),
        (["--max-retries", "-1"], "max_retries"),
        (["samples/nope.txt"], "samples/nope.txt does not exist"),
        (["samples"], "samples is a directory"),
    ],
)
def test_usage_errors_exit_2(
    server: ChatServer, capsys: pytest.CaptureFixture[str], extra: list[str], expected: str
) -> None:
    server.handler = answers({"CORNER CAFE": CAFE})
    files = [CAFE_FILE, *(a for a in extra if a.startswith("samples"))]
    flags = [a for a in extra if not a.startswith("samples")]
    code, out, err = run(
        capsys, *extract_argv(server, "schemas/receipt.py:Receipt", *files), *flags
    )
    assert code == 2
    assert out == ""
    assert expected in err
    assert server.requests == []


def test_no_model_without_the_local_extra_says_what_to_install(tmp_path: Path) -> None:
    # with no model the embedded default is used; hide llama_cpp as if it were not installed
    script = (
        "import sys; sys.modules['llama_cpp'] = None\n"
        "from extractor._cli import main\n"
        f"sys.exit(main(['extract', 'schemas/receipt.py:Receipt', {CAFE_FILE!r}]))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "EXTRACTOR_MODEL"}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    assert 'pip install "extractor[local]"' in done.stderr


def test_missing_key_for_a_remote_provider_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["extract", "schemas/receipt.py:Receipt", CAFE_FILE, "--model", "mistral/small"]
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert "MISTRAL_API_KEY" in err


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("schemas/nope.py:Receipt", "no such file: schemas/nope.py"),
        ("schemas/receipt.py:Reciept", "has no 'Reciept'; write schemas/receipt.py:Receipt"),
        ("schemas/receipt.py", "names no class; write schemas/receipt.py:Receipt"),
        ("schemas.receipt", "names no class; write schemas.receipt:Receipt"),
        ("no_such_package.models:Thing", "No module named 'no_such_package'"),
        ("schemas.contact:__doc__", "must name a model class"),
        ("schemas/absent.json", "no such JSON Schema file"),
        ("not a reference", "write path/to/file.py:Class"),
    ],
)
def test_bad_schema_reference_exits_2_saying_what_to_write(
    capsys: pytest.CaptureFixture[str], reference: str, expected: str
) -> None:
    code, out, err = run(capsys, "schema", reference)
    assert (code, out) == (2, "")
    assert err.startswith("extractor: error: ")
    assert expected in err


def test_broken_schema_files_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("from pydantic import BaseModel\nclass A(BaseModel)\n")
    (tmp_path / "broken.json").write_text('{"type": "object",')
    (tmp_path / "list.json").write_text("[1, 2]")
    for reference, expected in [
        (f"{tmp_path}/broken.py:A", "SyntaxError"),
        (f"{tmp_path}/broken.json", "cannot read the JSON Schema"),
        (f"{tmp_path}/list.json", "holds an array"),
    ]:
        code, _, err = run(capsys, "schema", reference)
        assert code == 2, reference
        assert expected in err, reference


# --- schema ---------------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", extractor.DIALECTS)
@pytest.mark.parametrize(
    ("reference", "module", "name"),
    [
        ("schemas/receipt.py:Receipt", "schemas.receipt", "Receipt"),
        ("schemas.invoice:Invoice", "schemas.invoice", "Invoice"),
        ("schemas/contact.py:Contact", "schemas.contact", "Contact"),
        ("schemas.contact:Contacts", "schemas.contact", "Contacts"),
    ],
)
def test_schema_prints_the_compiled_dialect(
    capsys: pytest.CaptureFixture[str], reference: str, module: str, name: str, dialect: str
) -> None:
    target = getattr(importlib.import_module(module), name)
    code, out, err = run(capsys, "schema", reference, "--dialect", dialect)
    assert code == 0
    # stderr says only what the dialect leaves out (the answer is still checked for it)
    assert all(" leaves out " in line for line in err.splitlines())
    assert json.loads(out) == extractor.compile_schema(target).dialect(dialect)
    assert out.startswith("{\n  ")  # indented


def test_schema_dialects_differ_where_they_should(capsys: pytest.CaptureFixture[str]) -> None:
    shown = {}
    for dialect in extractor.DIALECTS:
        _, out, _ = run(capsys, "schema", "schemas.invoice:Invoice", "--dialect", dialect)
        shown[dialect] = json.loads(out)
    assert "due_date" in shown["openai-strict"]["required"]  # strict: optional is nullable
    assert "due_date" not in shown["mistral"]["required"]
    assert "title" in shown["plain"]
    assert "title" not in shown["mistral"]
    _, default, _ = run(capsys, "schema", "schemas.invoice:Invoice")
    assert json.loads(default) == shown["plain"]


PERSON_SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name"],
}


def test_schema_reads_a_json_schema_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "person.json"
    path.write_text(json.dumps(PERSON_SCHEMA))
    code, out, _ = run(capsys, "schema", str(path), "--dialect", "openai-strict")
    assert code == 0
    strict = json.loads(out)
    assert strict == extractor.compile_schema(PERSON_SCHEMA).dialect("openai-strict")
    assert strict["required"] == ["name", "age"]
    assert strict["additionalProperties"] is False
    code, out, _ = run(capsys, "schema", str(path), "--dialect", "plain")
    assert (code, json.loads(out)) == (0, PERSON_SCHEMA)


def test_extract_with_a_json_schema_file_prints_the_dict(
    server: ChatServer, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "person.json"
    path.write_text(json.dumps(PERSON_SCHEMA))
    server.handler = answers({"Ann Lee": {"name": "Ann Lee", "age": None}})
    code, out, _ = run(capsys, *extract_argv(server, str(path), ANN_FILE))
    assert code == 0
    assert lines(out) == [{"file": ANN_FILE, "record": {"name": "Ann Lee"}}]  # null: not given


def test_inexpressible_schema_exits_1_naming_the_field(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "scores.py").write_text(
        "from __future__ import annotations\n"
        "from pydantic import BaseModel\n\n"
        "class Scores(BaseModel):\n"
        "    player: str\n"
        "    scores: dict[str, int]\n"
    )
    reference = f"{tmp_path}/scores.py:Scores"
    assert run(capsys, "schema", reference, "--dialect", "plain")[0] == 0
    code, out, err = run(capsys, "schema", reference, "--dialect", "openai-strict")
    assert (code, out) == (1, "")
    assert err.startswith("extractor: error: field 'scores'")


# --- help and version -----------------------------------------------------------------------


@pytest.mark.parametrize("command", [[], ["extract"], ["schema"]])
def test_help_has_an_example(capsys: pytest.CaptureFixture[str], command: list[str]) -> None:
    code, out, _ = run(capsys, *command, "--help")
    assert code == 0
    assert re.search(r"^example:\n  extractor (extract|schema) ", out, re.MULTILINE)
    if command == ["extract"]:
        assert "environment only" in out
        assert "OPENAI_API_KEY" in out
        assert "--api-key" not in out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "--version") == (0, f"extractor {extractor.__version__}\n", "")


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys)
    assert code == 2
    assert "COMMAND" in err


# --- the real entry point -------------------------------------------------------------------


def test_python_dash_m_extractor_runs(server: ChatServer) -> None:
    server.handler = answers({"Ann Lee": ANN})
    argv = extract_argv(server, "schemas/contact.py:Contact", ANN_FILE)
    done = subprocess.run(
        command(*argv),
        cwd=ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, "")
    assert lines(done.stdout) == [{"file": ANN_FILE, "record": ANN}]


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child is POSIX-only")
def test_ctrl_c_exits_130_quietly(server: ChatServer) -> None:
    arrived = threading.Event()

    def stall(request: RecordedRequest) -> Item:
        arrived.set()
        return Delay(30.0, Answer(content=json.dumps(ANN)))  # cut short when the server stops

    server.handler = stall
    argv = extract_argv(server, "schemas/contact.py:Contact", ANN_FILE)
    child = spawn(*argv)
    with child:
        try:
            assert arrived.wait(20), "the child never sent its request"
            child.send_signal(signal.SIGINT)
            out, err = child.communicate(timeout=20)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
    assert (child.returncode, out, err) == (130, "", "")
