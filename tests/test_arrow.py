"""Arrow types from a target's JSON Schema, and result rows as Arrow tables and back.

The rows come from real extractions (a client against the loopback `ChatServer`), or are
the JSON lines a batch job writes, edited where a test needs a value that does not fit.
"""

from __future__ import annotations

import datetime
import enum
import json
import subprocess
import sys
from collections.abc import Callable
from typing import Any, Literal

import pytest
from pydantic import BaseModel, Field

from extractor import Client, ConfigurationError, compile_schema
from extractor.testing import Answer, ChatServer, Fault, RecordedRequest

pa = pytest.importorskip("pyarrow")

from extractor._arrow import (  # noqa: E402  # after the skip: it needs pyarrow
    JOB_COLUMNS,
    JSON_KEY,
    record_type,
    result_row,
    result_schema,
    rows_to_table,
    table_rows,
)


class Color(str, enum.Enum):
    RED = "red"
    BLUE = "blue"


class Item(BaseModel):
    name: str
    qty: int = 1
    price: float | None = None


class Tree(BaseModel):
    value: int
    children: list[Tree] = []


class Receipt(BaseModel):
    merchant: str
    day: datetime.date | None = None
    at: datetime.datetime | None = None
    items: list[Item] = []
    color: Color = Color.RED
    kind: Literal["food", "fuel"] = "food"
    paid: bool = True
    total: float = Field(default=0, ge=0)
    count: int | None = None
    code: int | str = 0
    extra: dict[str, int] = {}
    anything: Any = None
    tree: Tree | None = None
    tags: list[str] = []


def is_json(field: Any) -> bool:
    return bool((field.metadata or {}).get(JSON_KEY))


def test_a_model_maps_field_by_field() -> None:
    kind = record_type(Receipt)
    item = pa.struct(
        [
            pa.field("name", pa.string()),
            pa.field("qty", pa.int64()),
            pa.field("price", pa.float64()),
        ]
    )
    expected = {
        "merchant": pa.string(),
        "day": pa.date32(),
        "at": pa.string(),  # date-time: offsets may differ value to value
        "items": pa.list_(pa.field("item", item)),
        "color": pa.string(),
        "kind": pa.string(),
        "paid": pa.bool_(),
        "total": pa.float64(),
        "count": pa.int64(),
        "code": pa.string(),
        "extra": pa.string(),
        "anything": pa.string(),
        "tags": pa.list_(pa.string()),
    }
    fields = {f.name: f for f in kind}
    assert list(fields) == [*Receipt.model_fields]
    for name, arrow in expected.items():
        assert fields[name].type.equals(arrow), name
        assert fields[name].nullable
    json_fields = {name for name, f in fields.items() if is_json(f)}
    assert json_fields == {"code", "extra", "anything"}
    # a recursive model: one level as a struct, the next as JSON text
    tree = fields["tree"].type
    assert tree.field("value").type == pa.int64()
    children = tree.field("children").type
    assert children.value_type == pa.string() and is_json(children.value_field)


def test_a_json_schema_dict_maps_the_same_way_refs_and_unions_included() -> None:
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "when": {"type": ["string", "null"], "format": "date"},
            "n": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
            "x": {"type": ["integer", "number"]},
            "levels": {"enum": [1, 2, 3]},
            "mixed": {"enum": ["a", 1]},
            "fixed": {"const": True},
            "pair": {"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}]},
            "owner": {"$ref": "#/$defs/Person"},
            "free": {"type": "object"},
            "open": {
                "type": "object",
                "properties": {"a": {"type": "string"}},
                "additionalProperties": True,
            },
            "two": {"oneOf": [{"type": "string"}, {"type": "string", "format": "email"}]},
        },
        "$defs": {"Person": {"type": "object", "properties": {"age": {"type": "integer"}}}},
    }
    fields = {f.name: f for f in record_type(schema)}
    assert fields["name"].type == pa.string()
    assert fields["when"].type == pa.date32()
    assert fields["n"].type == pa.int64()
    assert fields["x"].type == pa.float64()
    assert fields["levels"].type == pa.int64()
    assert fields["fixed"].type == pa.bool_()
    assert fields["owner"].type.equals(pa.struct([pa.field("age", pa.int64())]))
    assert fields["two"].type == pa.string() and not is_json(fields["two"])
    assert {n for n, f in fields.items() if is_json(f)} == {"mixed", "pair", "free", "open"}


def test_a_list_target_is_the_wrapped_object_and_a_free_form_one_a_json_column() -> None:
    assert [f.name for f in record_type(list[Item])] == ["items"]
    free = record_type({"type": "object", "additionalProperties": {"type": "integer"}})
    assert [f.name for f in free] == ["record"] and is_json(free.field("record"))


def test_the_result_schema_is_id_the_fields_then_the_job_columns() -> None:
    schema = result_schema(Item)
    assert schema.names == ["id", "name", "qty", "price", *JOB_COLUMNS]
    assert schema.field("id").type == pa.string()
    assert schema.field("_attempts").type == pa.int32()
    assert schema.field("_usage").type.field("cost").type == pa.float64()
    metadata = schema.metadata
    assert json.loads(metadata[b"extractor.schema"]) == compile_schema(Item).schema
    assert metadata[b"extractor.fingerprint"].decode() == compile_schema(Item).fingerprint


def test_a_field_named_like_a_result_column_puts_the_record_in_one_column() -> None:
    class Row(BaseModel):
        id: int
        _error_type: str = "private attributes are not fields"
        text: str

    with pytest.warns(UserWarning, match="id, as result columns are"):
        schema = result_schema(Row)
    assert schema.names == ["id", "record", *JOB_COLUMNS]
    rows = [{"id": "a", "record": {"id": 7, "text": "x"}, "attempts": 1}]
    table = rows_to_table(rows, schema)
    assert table.column("record").to_pylist() == [{"id": 7, "text": "x"}]
    assert next(table_rows(table))["record"] == {"id": 7, "text": "x"}


RECEIPT = {
    "merchant": "Shop",
    "day": "2024-03-01",
    "at": "2024-03-01T10:00:00+01:00",
    "items": [{"name": "tea", "qty": 2, "price": 1.5}],
    "color": "blue",
    "kind": "fuel",
    "paid": False,
    "total": 3.0,
    "count": None,
    "code": "A7",
    "extra": {"points": 3},
    "anything": [1, "two"],
    "tree": {"value": 1, "children": [{"value": 2, "children": []}]},
    "tags": ["a"],
}


def answer_with(record: dict[str, Any]) -> Callable[[RecordedRequest], Any]:
    def handle(request: RecordedRequest) -> Any:
        text = next(m["content"] for m in request.messages if m.get("role") == "user")
        if "broken" in text:
            return Fault(400)
        if "invalid" in text:
            return Answer(content=json.dumps({"merchant": 5}))
        usage = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15, "cost": 0.25}
        return Answer(content=json.dumps(record), usage=usage)

    return handle


def test_real_results_become_rows_and_a_table_and_come_back_as_json(
    server: ChatServer, make_client: Callable[..., Client]
) -> None:
    server.handler = answer_with(RECEIPT)
    client = make_client(max_retries=0)
    documents = [(1, "a receipt"), ("b", "a broken one"), ("c", "an invalid one")]
    results = {r.id: r for r in client.extract_many(Receipt, documents)}
    fingerprint = compile_schema(Receipt).fingerprint
    rows = [result_row(results[i], fingerprint=fingerprint) for i in (1, "b", "c")]
    assert rows[0]["record"]["day"] == "2024-03-01" and rows[0]["schema"] == fingerprint
    assert rows[1]["error"]["type"] == "APIStatusError"
    assert rows[2]["error"]["type"] == "RetriesExhausted" and rows[2]["raw"] == '{"merchant": 5}'

    table = rows_to_table(rows, result_schema(Receipt))
    assert table.num_rows == 3
    assert table.column("id").to_pylist() == ["1", "b", "c"]
    assert table.column("day").to_pylist() == [datetime.date(2024, 3, 1), None, None]
    assert table.column("items").to_pylist()[0] == [{"name": "tea", "qty": 2, "price": 1.5}]
    assert json.loads(table.column("extra")[0].as_py()) == {"points": 3}
    assert table.column("_error_type").to_pylist() == [None, "APIStatusError", "RetriesExhausted"]
    assert table.column("_raw").to_pylist()[2] == '{"merchant": 5}'
    assert table.column("_usage").to_pylist()[0] == {
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "total_tokens": 15,
        "cost": 0.25,
        "cached": 0,
    }
    assert table.column("_record_json").null_count == 3  # every record fits its columns

    back = list(table_rows(table))
    assert back[0]["record"] == RECEIPT  # dates as text again, JSON text decoded
    assert back[0]["usage"] == rows[0]["usage"]
    assert {k: back[0][k] for k in ("attempts", "mode", "model", "schema")} == {
        k: rows[0][k] for k in ("attempts", "mode", "model", "schema")
    }
    assert back[1]["error"] == rows[1]["error"] and "record" not in back[1]
    assert compile_schema(Receipt).load(back[0]["record"]) == results[1].value


def test_a_record_that_does_not_fit_its_columns_is_kept_whole_beside_them(
    caplog: pytest.LogCaptureFixture,
) -> None:
    odd = {
        **RECEIPT,
        "merchant": 12,  # not a string: written under another schema
        "day": "20240301",  # a date, spelled so it would not come back the same
        "count": 2**70,  # beyond int64
        "items": [{"name": "tea", "qty": "two"}],
        "new_field": "kept",
    }
    rows = [{"id": "x", "record": odd}, {"id": "y", "record": RECEIPT}]
    table = rows_to_table(rows, result_schema(Receipt))
    assert table.num_rows == 2
    first = table.slice(0, 1).to_pylist()[0]
    assert first["merchant"] is None and first["day"] is None and first["count"] is None
    assert first["items"] == [{"name": "tea", "qty": None, "price": None}]  # what fits stays
    assert first["paid"] is False
    assert json.loads(first["_record_json"]) == odd
    assert table.column("_record_json")[1].as_py() is None
    back = list(table_rows(table))
    assert back[0]["record"] == odd and back[1]["record"] == RECEIPT
    assert "1 record(s) do not fit" in caplog.text


def test_a_list_target_round_trips_through_its_wrapper() -> None:
    rows = [{"id": 1, "record": [{"name": "a", "qty": 1, "price": None}]}]
    table = rows_to_table(rows, result_schema(list[Item]))
    assert table.column("items").to_pylist() == [[{"name": "a", "qty": 1, "price": None}]]
    assert next(table_rows(table))["record"] == rows[0]["record"]


def test_importing_extractor_imports_no_pyarrow() -> None:
    code = (
        "import sys, extractor, extractor.batch, extractor.dataframes, extractor._arrow\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('pyarrow', 'pandas', 'polars')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_without_pyarrow_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # as if not installed
    with pytest.raises(ConfigurationError, match=r'pip install "extractor\[arrow\]"'):
        result_schema(Item)
