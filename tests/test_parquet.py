"""`extractor batch -o out.parquet`: a folder of complete part files, resumable, killable.

Real `python -m extractor` subprocesses against the loopback `ChatServer`; the output
is read back with pyarrow, pandas and polars as a user would.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from extractor import compile_schema
from extractor._exits import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from extractor.testing import Answer, ChatServer, Delay, RecordedRequest
from tests.processes import child_env, sigkill_when

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

from extractor.batch._parquet import (  # noqa: E402  # after the skip: it needs pyarrow
    ROWS_ENV,
    ParquetStore,
    journal_path,
    read_rows,
)
from extractor.batch._store import StoreError  # noqa: E402

RECEIPT = """\
import datetime

from pydantic import BaseModel, Field


class Item(BaseModel):
    name: str
    qty: int = Field(ge=1)


class Receipt(BaseModel):
    merchant: str
    day: datetime.date
    total: float = Field(ge=0)
    items: list[Item]
"""
# a release later: a field more, required
RECEIPT_V2 = RECEIPT + "    currency: str\n"


def answer(request: RecordedRequest) -> Any:
    text = next(str(m["content"]) for m in request.messages if m.get("role") == "user")
    name = text.split(" bought ", 1)[0]
    if name.endswith("7"):  # always a wrong answer: a failure
        return Answer(content=json.dumps({"merchant": name, "day": "no date"}))
    record = {
        "merchant": name,
        "day": "2024-05-06",
        "total": 3.5,
        "items": [{"name": "tea", "qty": 2}],
        "currency": "EUR",
    }
    return Answer(content=json.dumps(record))


def write_docs(path: Path, ids: list[Any]) -> None:
    path.write_text("".join(json.dumps({"id": i, "text": f"{i} bought tea."}) + "\n" for i in ids))


def batch_argv(server: ChatServer, schema: str, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "extractor", "batch", f"{schema}:Receipt", "docs.jsonl",
        "-o", "out.parquet", "--model", "openai/test-model", "--base-url", server.base_url,
        "--max-retries", "0", *extra,
    ]  # fmt: skip


def run(tmp_path: Path, argv: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, cwd=tmp_path, env={**child_env(), **env}, capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip


def extractor(tmp_path: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return run(tmp_path, [sys.executable, "-m", "extractor", *argv])


def only_parts(folder: Path) -> list[Path]:
    """The folder's files, all of them part files that read as Parquet."""
    files = sorted(folder.iterdir())
    assert all(f.name.startswith("part-") and f.suffix == ".parquet" for f in files), files
    for f in files:
        pq.read_table(f)
    return files


def test_a_job_writes_a_parquet_folder_that_every_reader_reads_and_resumes(
    server: ChatServer, tmp_path: Path
) -> None:
    pl = pytest.importorskip("polars")
    pd = pytest.importorskip("pandas")
    (tmp_path / "receipt.py").write_text(RECEIPT)
    ids: list[Any] = [f"r{i}" for i in range(30)] + list(range(100, 120))  # int ids too
    write_docs(tmp_path / "docs.jsonl", ids)
    server.handler = answer
    done = run(tmp_path, batch_argv(server, "receipt.py"), **{ROWS_ENV: "20"})
    assert done.returncode == EXIT_FAILED, done.stderr  # the ...7 documents fail
    failing = {str(i) for i in ids if str(i).endswith("7")}
    out = tmp_path / "out.parquet"
    assert len(only_parts(out)) == 3  # 45 records, 20 to a part
    assert not journal_path(out).exists()  # all in parts at the end

    table = pq.read_table(out)
    assert table.num_rows == len(ids) - len(failing)
    assert sorted(table.column("id").to_pylist()) == sorted(set(map(str, ids)) - failing)
    assert table.schema.field("day").type == pa.date32()
    assert table.schema.field("items").type.value_type.field("qty").type == pa.int64()
    assert set(table.column("_mode").to_pylist()) == {"json_schema"}
    assert table.column("_record_json").null_count == table.num_rows
    failures = [json.loads(x) for x in (tmp_path / "out.failures.jsonl").read_text().splitlines()]
    assert {str(f["id"]) for f in failures} == failing

    polars = pl.read_parquet(out)  # the folder itself, as Spark's output is read
    assert polars.height == table.num_rows and polars.schema["day"] == pl.Date
    pandas = pd.read_parquet(out)
    assert len(pandas) == table.num_rows and set(pandas["merchant"]) == set(map(str, ids)) - failing

    sent = len(server.requests)
    again = run(tmp_path, batch_argv(server, "receipt.py"))
    assert again.returncode == EXIT_FAILED  # the failures are still there
    assert f"skipped {len(ids):,} already in the output files" in again.stderr
    assert len(server.requests) == sent  # nothing sent again: int ids found as text

    retried = run(tmp_path, batch_argv(server, "receipt.py", "--retry-failures"))
    assert retried.returncode == EXIT_FAILED
    assert len(server.requests) == sent + len(failing)  # just the failures, once more
    assert pq.read_table(out).num_rows == table.num_rows

    restarted = run(tmp_path, batch_argv(server, "receipt.py", "--restart"))
    assert restarted.returncode == EXIT_FAILED
    assert len(only_parts(out)) == 1 and pq.read_table(out).num_rows == table.num_rows


def test_kill_9_mid_run_again_and_again_then_every_id_is_there_exactly_once(
    server: ChatServer, tmp_path: Path
) -> None:
    (tmp_path / "receipt.py").write_text(RECEIPT)
    ids = [f"doc-{i:03d}" for i in range(400)]
    failing = {i for i in ids if i.endswith("7")}
    write_docs(tmp_path / "docs.jsonl", ids)
    out = tmp_path / "out.parquet"
    journal = journal_path(out)
    server.handler = lambda request: Delay(0.01, answer(request))
    argv = batch_argv(server, "receipt.py", "--concurrency", "8")
    env = {**child_env(), ROWS_ENV: "25"}

    def journal_lines() -> int:
        try:
            return journal.read_bytes().count(b"\n")
        except FileNotFoundError:
            return 0

    def in_parts() -> int:
        return sum(pq.ParquetFile(p).metadata.num_rows for p in only_parts(out))

    def kill_when(ready: Callable[[], bool]) -> None:
        child = subprocess.Popen(
            argv, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        sigkill_when(child, ready, timeout=60)
        if out.is_dir():
            only_parts(out)  # after every kill, every file of the folder reads

    def parts_count() -> int:
        return len(list(out.glob("part-*.parquet"))) if out.is_dir() else 0

    kill_when(lambda: parts_count() >= 2)  # killed once a few parts are out
    after_first = in_parts()
    kill_when(lambda: journal_lines() >= 10)  # mid-part: records only in the journal
    kill_when(lambda: parts_count() >= 6)
    kill_when(lambda: journal_lines() >= 3)
    assert after_first < in_parts() + journal_lines()
    with journal.open("ab") as torn:  # what a kill in the middle of a write leaves
        torn.write(b'{"id": "doc-399", "record": {"mer')

    final = subprocess.run(
        argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert final.returncode == EXIT_FAILED, final.stderr
    assert "cut off a torn last line" in final.stderr
    only_parts(out)
    records = pq.read_table(out)
    done_ids = records.column("id").to_pylist()
    failed_ids = [
        json.loads(x)["id"] for x in (tmp_path / "out.failures.jsonl").read_text().splitlines()
    ]
    assert sorted(done_ids + failed_ids) == ids  # each id exactly once, across both
    assert set(failed_ids) == failing
    assert set(records.column("merchant").to_pylist()) == set(ids) - failing
    assert not journal.exists()


def test_validate_finds_a_record_broken_by_hand_in_parquet(
    server: ChatServer, tmp_path: Path
) -> None:
    (tmp_path / "receipt.py").write_text(RECEIPT)
    write_docs(tmp_path / "docs.jsonl", ["a1", "b2", "c3"])
    server.handler = answer
    assert run(tmp_path, batch_argv(server, "receipt.py")).returncode == EXIT_OK
    fine = extractor(tmp_path, "validate", "receipt.py:Receipt", "out.parquet")
    assert fine.returncode == EXIT_OK, fine.stderr
    assert "3 record(s) checked, 0 do not fit" in fine.stderr

    (part,) = only_parts(tmp_path / "out.parquet")
    table = pq.read_table(part)
    rows = table.to_pylist()
    by_id = {row["id"]: row for row in rows}
    by_id["b2"]["total"] = -2.0  # below the schema's minimum
    by_id["c3"]["items"] = [{"name": "tea", "qty": 0}]  # a list item out of bounds
    by_id["c3"]["merchant"] = None  # ... and a required field gone
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), part)

    broken = extractor(tmp_path, "validate", "receipt.py:Receipt", "out.parquet")
    assert broken.returncode == EXIT_FAILED
    assert sorted(broken.stdout.splitlines()) == [
        "b2: total: Input should be greater than or equal to 0 (got -2.0)",
        "c3: items[0].qty: Input should be greater than or equal to 1 (got 0)",
        "c3: merchant: Input should be a valid string (got null)",
    ]
    assert "3 record(s) checked, 2 do not fit Receipt" in broken.stderr
    one_file = extractor(tmp_path, "validate", "receipt.py:Receipt", str(part))
    assert one_file.returncode == EXIT_FAILED and one_file.stdout == broken.stdout

    (tmp_path / "receipt2.py").write_text(RECEIPT_V2)
    newer = extractor(tmp_path, "validate", "receipt2.py:Receipt", "out.parquet")
    assert newer.returncode == EXIT_FAILED
    assert "a1: currency: Field required" in newer.stdout.splitlines()
    assert "3 were written under another schema" in newer.stderr

    (tmp_path / "not.parquet").write_text("not parquet")
    garbage = extractor(tmp_path, "validate", "receipt.py:Receipt", "not.parquet")
    assert garbage.returncode == EXIT_USAGE and "cannot be read as Parquet" in garbage.stderr


def test_a_changed_schema_stops_the_resume_and_keep_writes_into_the_same_columns(
    server: ChatServer, tmp_path: Path
) -> None:
    (tmp_path / "receipt.py").write_text(RECEIPT)
    (tmp_path / "receipt2.py").write_text(RECEIPT_V2)
    write_docs(tmp_path / "docs.jsonl", ["a1"])
    server.handler = answer
    assert run(tmp_path, batch_argv(server, "receipt.py")).returncode == EXIT_OK
    write_docs(tmp_path / "docs.jsonl", ["a1", "b2"])

    stopped = run(tmp_path, batch_argv(server, "receipt2.py"))
    assert stopped.returncode == EXIT_USAGE
    assert "written under another schema" in stopped.stderr and "--restart" in stopped.stderr
    assert pq.read_table(tmp_path / "out.parquet").num_rows == 1  # nothing added

    kept = run(tmp_path, batch_argv(server, "receipt2.py", "--schema-changed", "keep"))
    assert kept.returncode == EXIT_OK, kept.stderr
    table = pq.read_table(tmp_path / "out.parquet")  # one table: the first part's columns
    assert table.num_rows == 2 and "currency" not in table.column_names
    rows = {r["id"]: r for r in read_rows(tmp_path / "out.parquet")}
    assert rows["b2"]["record"]["currency"] == "EUR"  # kept whole in _record_json
    assert len({rows["a1"]["schema"], rows["b2"]["schema"]}) == 2
    valid = extractor(tmp_path, "validate", "receipt2.py:Receipt", "out.parquet")
    assert valid.stdout.splitlines() == ["a1: currency: Field required"]


def test_the_store_holds_its_output_and_refuses_a_file(tmp_path: Path) -> None:
    out, failures = tmp_path / "out.parquet", tmp_path / "out.failures.jsonl"
    schema = {"type": "object", "properties": {"name": {"type": "string"}}}
    with ParquetStore(out, failures, schema, rows_per_part=2) as store:
        with pytest.raises(StoreError, match="in use by another batch job"):
            ParquetStore(out, failures, schema)
        for i in range(5):
            store.write({"id": i, "record": {"name": f"n{i}"}, "schema": "f"}, ok=True)
        store.write({"id": "x", "error": {"type": "E", "message": "m"}}, ok=False)
        assert len(only_parts(out)) == 2 and journal_path(out).read_bytes().count(b"\n") == 1
        read = [(r["id"], r["record"]) for r in read_rows(out)]  # the parts, then the journal
        assert read == [(str(i), {"name": f"n{i}"}) for i in range(5)]
    assert len(only_parts(out)) == 3
    with ParquetStore(out, failures, schema) as again:
        assert again.done == {"0": True, "1": True, "2": True, "3": True, "4": True, "x": False}
        assert again.done.get(3) is True and 4 in again.done  # an int id finds its text
    (tmp_path / "file.parquet").write_bytes(b"PAR1")
    with pytest.raises(StoreError, match="is a file"):
        ParquetStore(tmp_path / "file.parquet", failures, schema)


def test_a_part_already_holding_the_journal_rows_is_not_written_twice(tmp_path: Path) -> None:
    """A kill between a part's rename and the journal's truncation: the part counts."""
    out, failures = tmp_path / "out.parquet", tmp_path / "out.failures.jsonl"
    schema = {"type": "object", "properties": {"name": {"type": "string"}}}
    lines = [{"id": f"d{i}", "record": {"name": str(i)}} for i in range(3)]
    with ParquetStore(out, failures, schema) as store:
        for line in lines:
            store.write(line, ok=True)
    journal_path(out).write_text("".join(json.dumps(x) + "\n" for x in lines))  # as if left
    with ParquetStore(out, failures, schema) as store:
        store.write({"id": "d9", "record": {"name": "9"}}, ok=True)
    ids = pq.read_table(out).column("id").to_pylist()
    assert sorted(ids) == ["d0", "d1", "d2", "d9"]


def test_a_journal_left_by_a_kill_becomes_a_part_even_when_nothing_is_left_to_do(
    tmp_path: Path,
) -> None:
    out, failures = tmp_path / "out.parquet", tmp_path / "out.failures.jsonl"
    schema = {"type": "object", "properties": {"name": {"type": "string"}}}
    fingerprint = compile_schema(schema).fingerprint
    rows = [{"id": f"d{i}", "record": {"name": str(i)}, "schema": fingerprint} for i in range(3)]
    out.mkdir()
    journal_path(out).write_text("".join(json.dumps(x) + "\n" for x in rows))
    with ParquetStore(out, failures, {"type": "object"}) as stopped:  # another schema: kept
        assert stopped.done == {"d0": True, "d1": True, "d2": True}
    assert only_parts(out) == [] and journal_path(out).exists()
    with ParquetStore(out, failures, schema):
        pass  # every document done: the job writes nothing, and the journal still goes
    assert pq.read_table(out).column("id").to_pylist() == ["d0", "d1", "d2"]
    assert not journal_path(out).exists()
