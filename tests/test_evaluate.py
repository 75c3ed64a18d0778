"""Tests for `extractor eval` and `extractor._evaluate`: the command runs in-process through
`main` against the loopback `server` fixture (real HTTP; bodies checked against OpenAI's
request schema at teardown), the matching and summary functions as plain units."""

from __future__ import annotations

import json
import re
import statistics
import sys
from pathlib import Path
from typing import Any

import pytest

from extractor import Client, ConfigurationError
from extractor._cli import main
from extractor._evaluate import (
    DatasetError,
    DocResult,
    ErrorInfo,
    Example,
    Summary,
    as_text,
    evaluate_dataset,
    field_matches,
    format_table,
    nearest_rank,
    normalize,
    read_dataset,
)
from extractor._result import Usage
from extractor.testing import Answer, ChatServer, Delay, Fault, Item, RecordedRequest

ROOT = Path(__file__).resolve().parent.parent
CONTACT = "schemas/contact.py:Contact"
ENVS = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENROUTER_API_KEY", "MISTRAL_API_KEY")

# Five documents: an exact answer, one right only under `norm`, one with misses, one whose
# answers are never valid JSON, and one with a field no other gold has.
DOCS: list[dict[str, Any]] = [
    {
        "id": "a",
        "text": "DOC-A Ann Lee, ann@example.com, +31 10 555 0142",
        "gold": {
            "name": "Ann Lee",
            "email": "ann@example.com",
            "phone": "+31 10 555 0142",
            "role": "",
        },
    },
    {
        "id": "b",
        "text": "DOC-B Marek Nowak (CTO), marek@example.com, +48 22 555 0100",
        "gold": {
            "name": "Marek Nowak",
            "email": "marek@example.com",
            "phone": "+48 22 555 0100",
            "role": "CTO",
        },
    },
    {
        "id": "c",
        "text": "DOC-C Li Wei, Engineer, 555",
        "gold": {"name": "Li Wei", "email": None, "phone": "555", "role": "Engineer"},
    },
    {
        "id": "d",
        "text": "DOC-D nothing to see here",
        "gold": {"name": "Nobody", "email": "", "phone": "", "role": ""},
    },
    {
        "id": "e",
        "text": "DOC-E Eve Stone of Northwind",
        "gold": {"name": "Eve Stone", "organization": "Northwind"},
    },
]
ANSWERS: dict[str, dict[str, Any]] = {
    "DOC-A": {"name": "Ann Lee", "email": "ann@example.com", "phone": "+31 10 555 0142"},
    "DOC-B": {
        "name": "MAREK  NOWAK",
        "email": "Marek@Example.com",
        "phone": "+4822 5550100",
        "role": " CTO ",
    },
    "DOC-C": {"name": "Li Wei", "email": "li@example.com", "phone": "556", "role": "engineer"},
    "DOC-E": {"name": "Eve Stone", "organization": "NorthWind"},
}
SLOW = 0.05  # DOC-B waits this long, so it is the slowest document: the p90 of five
BAD_USAGE = {"prompt_tokens": 100, "completion_tokens": 1, "total_tokens": 101}

# (strict hits, norm hits, n) per field, worked out by hand from DOCS and ANSWERS
EXPECTED = {
    "name": ("60.0%", "80.0%", 5),  # b differs in case and spacing; d failed
    "email": ("25.0%", "50.0%", 4),  # b differs in case; c answered where gold is null
    "phone": ("25.0%", "50.0%", 4),  # b differs in spacing; c wrong
    "role": ("50.0%", "75.0%", 4),  # a: absent matches ""; b " CTO " strips; c case
    "organization": ("0.0%", "100.0%", 1),
}


@pytest.fixture(autouse=True)
def _hermetic(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run from the repository root, with no model or key from the caller's environment."""
    monkeypatch.chdir(ROOT)
    monkeypatch.syspath_prepend(str(ROOT))
    for name in (*ENVS, "EXTRACTOR_MODEL"):
        monkeypatch.delenv(name, raising=False)


def handle(request: RecordedRequest) -> Item:
    """Answer by the marker in the document (the first user message)."""
    document = next(str(m["content"]) for m in request.messages if m.get("role") == "user")
    marker = document.split()[0]
    if marker not in ANSWERS:
        return Answer(content="Sorry, nothing like that here.", usage=BAD_USAGE)
    answer = Answer(content=json.dumps(ANSWERS[marker]))
    return Delay(SLOW, answer) if marker == "DOC-B" else answer


def write_dataset(path: Path, docs: list[dict[str, Any]] = DOCS) -> Path:
    path.write_text("".join(json.dumps(doc) + "\n" for doc in docs), encoding="utf-8")
    return path


def eval_argv(server: ChatServer, dataset: Path, *rest: str) -> list[str]:
    flags = ["--model", "openai/test-model", "--base-url", server.base_url, "--max-retries", "1"]
    return ["eval", CONTACT, str(dataset), *flags, *rest]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def read_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# --- the command ----------------------------------------------------------------------------


def test_table_scores_each_field_and_overall(
    server: ChatServer, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    server.handler = handle
    code, out, err = run(capsys, *eval_argv(server, write_dataset(tmp_path / "gold.jsonl")))
    assert (code, err) == (0, "")  # misses are measured, not judged; no progress off a TTY
    rows = {line.split()[0]: " ".join(line.split()[1:]) for line in out.splitlines() if line}
    assert rows["field"] == "strict norm"
    for name, (strict, norm, _) in EXPECTED.items():
        assert rows[name] == f"{strict} {norm}", name
    assert rows["overall"] == "38.9% 66.7%"  # 7 and 12 of 18
    assert rows["valid"] == "80.0% (4/5)"
    tokens = "prompt 240, completion 22, total 262 (per document 48.0 / 4.4 / 52.4)"
    assert rows["tokens"] == tokens  # d's two failed answers cost 100 + 1 each
    assert rows["attempts"] == "1.2 per document"
    assert rows["failures"] == "RetriesExhausted 1"
    assert re.search(r"^latency   median \d+\.\d{3} s, p90 0\.\d{3} s$", out, re.MULTILINE)
    assert "cost" not in rows  # the server reports none
    assert [name for name in rows if name in EXPECTED] == list(EXPECTED)  # gold key order
    assert len(server.requests) == 6  # d was asked twice (--max-retries 1)


def test_json_report_has_every_figure_and_agrees_with_the_results_file(
    server: ChatServer, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    server.handler = handle
    results = tmp_path / "results.jsonl"
    argv = eval_argv(server, write_dataset(tmp_path / "gold.jsonl"), "--json", "-o", str(results))
    code, out, _ = run(capsys, *argv)
    assert code == 0
    report = json.loads(out)
    assert list(report) == [
        "model",
        "documents",
        "fields",
        "overall",
        "valid",
        "valid_rate",
        "latency_s",
        "tokens",
        "cost",
        "cached_answers",
        "attempts_mean",
        "failures",
    ]
    assert report["model"] == "openai/test-model"
    assert (report["documents"], report["valid"], report["valid_rate"]) == (5, 4, 0.8)
    for name, (strict, norm, n) in EXPECTED.items():
        field = report["fields"][name]
        assert field["n"] == n
        assert (f"{field['strict'] * 100:.1f}%", f"{field['norm'] * 100:.1f}%") == (strict, norm)
    assert report["overall"] == {"n": 18, "strict": 7 / 18, "norm": 12 / 18}
    assert report["tokens"] == {
        "prompt": 240,
        "completion": 22,
        "total": 262,
        "per_document": {"prompt": 48.0, "completion": 4.4, "total": 52.4},
    }
    assert (report["cost"], report["attempts_mean"]) == (None, 1.2)
    assert report["failures"] == {"RetriesExhausted": 1}
    latencies = [row["latency_s"] for row in read_lines(results)]
    assert report["latency_s"]["p90"] == pytest.approx(max(latencies), abs=1e-6)  # 5 docs
    assert report["latency_s"]["p90"] >= SLOW
    assert report["latency_s"]["median"] == pytest.approx(statistics.median(latencies), abs=1e-6)


def test_results_file_has_one_line_per_document(
    server: ChatServer, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    server.handler = handle
    results = tmp_path / "results.jsonl"
    argv = eval_argv(server, write_dataset(tmp_path / "gold.jsonl"), "-o", str(results))
    assert run(capsys, *argv)[0] == 0
    rows = read_lines(results)
    assert [row["id"] for row in rows] == ["a", "b", "c", "d", "e"]
    for row in rows:
        assert list(row) == ["id", "record", "gold", "match", "latency_s", "error", "attempts"]
    a, b, c, d, e = rows
    assert a["record"] == {**ANSWERS["DOC-A"], "organization": None, "role": None}
    assert a["gold"] == DOCS[0]["gold"]
    assert all(m == {"strict": True, "norm": True} for m in a["match"].values())
    assert b["match"]["name"] == {"strict": False, "norm": True}
    assert b["match"]["role"] == {"strict": True, "norm": True}
    assert c["match"]["email"] == {"strict": False, "norm": False}
    assert (a["error"], a["attempts"], b["latency_s"] >= SLOW) == (None, 1, True)
    assert d["record"] is None
    assert d["error"]["type"] == "RetriesExhausted"
    assert "2 attempt" in d["error"]["message"]
    assert d["attempts"] == 2
    assert d["match"] == {name: {"strict": False, "norm": False} for name in DOCS[3]["gold"]}
    assert e["match"] == {
        "name": {"strict": True, "norm": True},
        "organization": {"strict": False, "norm": True},
    }


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("{not json", "line 3: not JSON"),
        (
            '{"text": "DOC-X", "gold": {}}',
            'line 3: "id" must be a string or an integer, not nothing',
        ),
        (
            '{"id": true, "text": "DOC-X", "gold": {}}',
            '"id" must be a string or an integer, not a boolean',
        ),
        ('{"id": "x", "gold": {"name": "X"}}', 'line 3: "text" must be a string, not nothing'),
        ('{"id": "x", "text": "  ", "gold": {}}', 'line 3: "text" is empty'),
        ('{"id": "x", "text": "DOC-X", "gold": ["X"]}', 'line 3: "gold" must be an object'),
        ('{"id": "a", "text": "DOC-X", "gold": {}}', "line 3: id 'a' repeats line 1"),
        ('["a", "DOC-X"]', "line 3: expected an object"),
    ],
)
def test_bad_dataset_line_exits_2_naming_it_before_any_request(
    server: ChatServer,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    line: str,
    expected: str,
) -> None:
    server.handler = handle
    dataset = tmp_path / "gold.jsonl"
    good = [json.dumps(doc) for doc in DOCS]
    dataset.write_text("\n".join([good[0], good[1], line, *good[2:]]) + "\n", encoding="utf-8")
    results = tmp_path / "results.jsonl"
    code, out, err = run(capsys, *eval_argv(server, dataset, "-o", str(results)))
    assert (code, out) == (2, "")
    assert err.startswith(f"extractor: error: bad dataset {dataset}: ")
    assert expected in err
    assert server.requests == []
    assert not results.exists()  # nothing opened either


def test_limit_runs_the_first_documents_after_checking_the_whole_file(
    server: ChatServer, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    server.handler = handle
    dataset = write_dataset(tmp_path / "gold.jsonl")
    code, out, _ = run(capsys, *eval_argv(server, dataset, "--limit", "2", "--json"))
    assert code == 0
    report = json.loads(out)
    assert report["documents"] == 2
    assert report["overall"] == {"n": 8, "strict": 5 / 8, "norm": 8 / 8}
    assert len(server.requests) == 2

    with dataset.open("a", encoding="utf-8") as file:
        file.write("\n\n{oops\n")  # blank lines are skipped; line 8 is bad
    code, _, err = run(capsys, *eval_argv(server, dataset, "--limit", "1"))
    assert code == 2
    assert "line 8: not JSON" in err
    assert len(server.requests) == 2


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--limit", "0"], "--limit must be 1 or more"),
        (["--param", "temprature=0"], "'temprature'"),
        (["-o", "."], "cannot write the results to ."),
        (["-o", "no/such/dir/out.jsonl"], "cannot write the results to no/such/dir"),
    ],
)
def test_usage_errors_exit_2_and_send_nothing(
    server: ChatServer,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    extra: list[str],
    expected: str,
) -> None:
    server.handler = handle
    code, out, err = run(capsys, *eval_argv(server, write_dataset(tmp_path / "g.jsonl"), *extra))
    assert (code, out) == (2, "")
    assert expected in err
    assert server.requests == []


def test_missing_dataset_or_key_exits_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, _, err = run(capsys, "eval", CONTACT, str(tmp_path / "absent.jsonl"), "--model", "x/y")
    assert code == 2
    assert "no such dataset file" in err
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n  \n", encoding="utf-8")
    code, _, err = run(capsys, "eval", CONTACT, str(empty), "--model", "x/y")
    assert (code, "has no documents" in err) == (2, True)
    monkeypatch.delenv("MISTRAL_API_KEY", raising=False)
    dataset = str(write_dataset(tmp_path / "g.jsonl"))
    code, _, err = run(capsys, "eval", CONTACT, dataset, "--model", "mistral/mistral-small")
    assert code == 2
    assert "MISTRAL_API_KEY" in err


def test_ctrl_c_exits_130_keeping_the_finished_lines(
    server: ChatServer,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server.handler = handle
    real = Client.extract_result
    calls: list[str] = []

    def interrupt_third(self: Client, target: Any, document: str, **options: Any) -> Any:
        calls.append(document)
        if len(calls) == 3:  # the finished lines are on disk already, not just buffered
            assert [row["id"] for row in read_lines(results)] == ["a", "b"]
            raise KeyboardInterrupt
        return real(self, target, document, **options)

    monkeypatch.setattr(Client, "extract_result", interrupt_third)
    results = tmp_path / "results.jsonl"
    argv = eval_argv(server, write_dataset(tmp_path / "gold.jsonl"), "-o", str(results))
    code, out, _ = run(capsys, *argv)
    assert (code, out) == (130, "")
    assert [row["id"] for row in read_lines(results)] == ["a", "b"]


def test_progress_goes_to_stderr_only_on_a_terminal(
    server: ChatServer,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server.handler = handle
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    code, out, err = run(capsys, *eval_argv(server, write_dataset(tmp_path / "gold.jsonl")))
    assert code == 0
    assert [f"[{i}/5] {doc['id']}" for i, doc in enumerate(DOCS, 1)] == re.findall(
        r"\r(\[\d/5\] \w)", err
    )
    assert err.endswith("\r" + " " * len("[1/5] a") + "\r")  # wiped at the end
    assert "[" not in out


def test_help_documents_the_json_keys(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "eval", "--help")
    assert code == 0
    assert re.search(r"^example:\n  extractor eval ", out, re.MULTILINE)
    for key in ("valid_rate", "latency_s", "per_document", "attempts_mean", "failures"):
        assert key in out
    code, out, _ = run(capsys, "--help")
    assert "eval" in out


# --- the library ----------------------------------------------------------------------------

TOTAL_SCHEMA = {
    "type": "object",
    "properties": {"total": {"type": "number"}, "paid": {"type": "boolean"}},
    "required": ["total", "paid"],
}


def test_evaluate_dataset_scores_numbers_and_every_kind_of_failure(
    server: ChatServer, make_client: Any
) -> None:
    server.script(
        Answer(content='{"total": 1600.0, "paid": true}'),
        Answer(refusal="I will not read invoices."),
        Fault(401),
    )
    examples = [Example(i, f"invoice {i}", {"total": 1600, "paid": True}) for i in (1, 2, 3)]
    with make_client() as client:
        summary, results = evaluate_dataset(client, TOTAL_SCHEMA, examples)
    assert [r.match["total"] for r in results] == [{"strict": True, "norm": True}] + [
        {"strict": False, "norm": False}
    ] * 2
    assert [r.attempts for r in results] == [1, 1, 0]
    assert [r.error and r.error["type"] for r in results] == [None, "Refusal", "APIStatusError"]
    report = summary.report()
    assert report["failures"] == {"APIStatusError": 1, "Refusal": 1}
    assert report["overall"] == {"n": 6, "strict": 2 / 6, "norm": 2 / 6}
    assert report["valid"] == 1
    assert len(server.requests) == 3


# --- matching -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "strict", "norm"),
    [
        (None, "", ""),
        ("", "", ""),
        ("  Ann\u00a0 Lee\t\n", "Ann\u00a0 Lee", "ANNLEE"),  # no-break space is whitespace
        ("straße", "straße", "STRASSE"),
        (9, "9", "9"),
        (9.0, "9", "9"),
        (9.5, "9.5", "9.5"),
        (True, "true", "TRUE"),
        ([1, 2.0, None], "[1,2,null]", "[1,2,NULL]"),
        ({"b": "x y", "a": 1.0}, '{"a":1,"b":"x y"}', '{"A":1,"B":"XY"}'),
    ],
)
def test_as_text_and_normalize(value: Any, strict: str, norm: str) -> None:
    assert as_text(value) == strict
    assert normalize(value) == norm


def test_field_matches_edge_cases() -> None:
    gold = {"a": "", "b": None, "c": 1600, "d": "9.00", "e": "1600", "f": "x"}
    record = {"a": None, "c": 1600.0, "d": 9.0, "e": 1600, "f": " X "}
    assert field_matches(record, gold) == {
        "a": {"strict": True, "norm": True},  # null reads as ""
        "b": {"strict": True, "norm": True},  # absent reads as null
        "c": {"strict": True, "norm": True},  # 1600.0 is 1600
        "d": {"strict": False, "norm": False},  # 9.0 is not the text "9.00"
        "e": {"strict": True, "norm": True},  # the number's JSON is the gold's text
        "f": {"strict": False, "norm": True},
    }
    miss = {"strict": False, "norm": False}
    assert field_matches(None, {"a": "", "b": None}) == {"a": miss, "b": miss}
    assert field_matches([{"a": ""}], {"a": ""}) == {"a": miss}  # not an object
    assert field_matches({}, {}) == {}


# --- summary --------------------------------------------------------------------------------


def doc(latency: float, *, ok: bool = True, attempts: int = 1) -> DocResult:
    example = Example("x", "text", {"f": "v"})
    match = field_matches({"f": "v"} if ok else None, example.gold)
    error = None if ok else ErrorInfo(type="APITimeoutError", message="timed out")
    usage = Usage(3, 2, 5, cost=0.5) if ok else Usage()
    return DocResult(example, {"f": "v"} if ok else None, match, latency, attempts, usage, error)


def test_nearest_rank() -> None:
    assert nearest_rank([], 0.9) is None
    assert nearest_rank([7.0], 0.9) == 7.0
    assert nearest_rank([float(i) for i in range(10, 0, -1)], 0.9) == 9.0  # 9th of 10
    assert nearest_rank([1.0, 2.0, 3.0, 4.0, 5.0], 0.9) == 5.0  # ceil(4.5) = 5th
    assert nearest_rank([float(i) for i in range(1, 21)], 0.9) == 18.0
    assert nearest_rank([1.0, 2.0], 0.0) == 1.0
    hundred = [float(i) for i in range(1, 101)]
    assert nearest_rank(hundred, 0.07) == 7.0  # 0.07 * 100 is 7.000000000000001 in floats
    assert nearest_rank(hundred, 0.9) == 90.0


def test_summary_adds_documents_one_at_a_time() -> None:
    summary = Summary()
    empty = summary.report()
    assert (empty["valid_rate"], empty["overall"]["strict"], empty["latency_s"]) == (
        None,
        None,
        {"median": None, "p90": None},
    )
    assert "n/a" in format_table({"model": "m", **empty})
    for latency in (0.4, 0.1, 0.3):
        summary.add(doc(latency))
    summary.add(doc(0.2, ok=False, attempts=0))
    report = summary.report()
    assert report["latency_s"] == {"median": pytest.approx(0.25), "p90": 0.4}
    assert report["fields"] == {"f": {"n": 4, "strict": 0.75, "norm": 0.75}}
    assert (report["valid_rate"], report["attempts_mean"], report["cost"]) == (0.75, 0.75, 1.5)
    assert report["tokens"]["per_document"] == {"prompt": 2.25, "completion": 1.5, "total": 3.75}
    table = format_table(report)
    assert "cost      1.500000" in table
    assert "failures  APITimeoutError 1" in table


# --- reading a dataset ----------------------------------------------------------------------


def test_read_dataset_skips_blank_lines_and_a_bom(tmp_path: Path) -> None:
    path = tmp_path / "gold.jsonl"
    lines = ['{"id": 1, "text": "a", "gold": {}}', "", '{"id": "2", "text": "b", "gold": {"x": 1}}']
    path.write_text("\ufeff" + "\n".join(lines), encoding="utf-8")
    assert read_dataset(path) == [Example(1, "a", {}, 1), Example("2", "b", {"x": 1}, 3)]
    assert read_dataset(path, limit=1) == [Example(1, "a", {}, 1)]


def test_read_dataset_names_a_line_that_is_not_utf8_and_counts_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "gold.jsonl"
    path.write_bytes(b'{"id": 1, "text": "a", "gold": {}}\n{"id": 2, "text": "caf\xe9"}\n')
    with pytest.raises(DatasetError, match="line 2: not UTF-8"):
        read_dataset(path)
    path.write_text("".join(f'{{"id": {i}}}\n' for i in range(8)), encoding="utf-8")
    with pytest.raises(DatasetError, match=r"line 5: .*\(and 3 more bad lines\)$") as caught:
        read_dataset(path)
    assert "line 6" not in str(caught.value)


def test_a_configuration_error_stops_the_run_instead_of_scoring_misses(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("MISTRAL_API_KEY", raising=False)
    examples = [Example(1, "a note", {"f": "v"}), Example(2, "another", {"f": "v"})]
    client = Client(model="mistral/mistral-small")
    with client, pytest.raises(ConfigurationError, match="MISTRAL_API_KEY"):
        evaluate_dataset(client, TOTAL_SCHEMA, examples)  # no key: every document would fail
