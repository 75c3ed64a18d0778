"""`extractor.dataframes`: a pandas or polars column in, the records as new typed columns.

A real client against the loopback `ChatServer`, some of whose answers are faults or
wrong records: every row comes back, in its place, with a record or with why not.
"""

from __future__ import annotations

import asyncio
import datetime
import json
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import BaseModel

from extractor import Client, ConfigurationError
from extractor.testing import Answer, ChatServer, Delay, Fault, RecordedRequest

pa = pytest.importorskip("pyarrow")

from extractor.dataframes import aextract, extract  # noqa: E402


class Item(BaseModel):
    name: str
    qty: int


class Order(BaseModel):
    customer: str
    day: datetime.date
    items: list[Item]
    note: str | None = None


TEXTS = ["Ann ordered", "Bo fails", "Cy ordered", "Di is wrong", "Ed ordered", "Flo ordered"]


def answer(request: RecordedRequest) -> Any:
    text = next(str(m["content"]) for m in request.messages if m.get("role") == "user")
    name = text.split(" ", 1)[0]
    if "fails" in text:
        return Fault(400)
    if "wrong" in text:
        return Answer(content=json.dumps({"customer": name, "day": "soon", "items": []}))
    delay = 0.05 if name == "Ann" else 0.0  # the first row finishes last
    record = {"customer": name, "day": "2024-02-03", "items": [{"name": "tea", "qty": 2}]}
    usage = {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
    return Delay(delay, Answer(content=json.dumps(record), usage=usage))


@pytest.fixture
def client(server: ChatServer, make_client: Callable[..., Client]) -> Client:
    server.handler = answer
    return make_client(max_retries=0)


def test_pandas_rows_keep_their_order_and_failures_their_rows(client: Client) -> None:
    pd = pytest.importorskip("pandas")
    texts: list[Any] = [*TEXTS, None]
    frame = pd.DataFrame({"text": texts, "n": range(7)}, index=[5, 4, 3, 3, 2, 1, 0])
    out = extract(frame, Order, client=client, concurrency=4)
    assert list(out.index) == list(frame.index) and list(out["n"]) == list(range(7))
    assert list(frame.columns) == ["text", "n"]  # the input is not changed
    assert out.columns[:6].tolist() == ["text", "n", "customer", "day", "items", "note"]
    assert py(out["customer"]) == ["Ann", None, "Cy", None, "Ed", "Flo", None]
    assert py(out["_error_type"]) == [
        *(None, "APIStatusError", None, "RetriesExhausted", None, None),
        "DocumentError",  # the null text
    ]
    assert "null" in out["_error_message"].iloc[6]
    assert py(out["day"])[0] == datetime.date(2024, 2, 3)
    assert str(out["day"].dtype) == "date32[day][pyarrow]"
    assert str(out["_attempts"].dtype) == "int32[pyarrow]"
    assert py(out["items"])[0] == [{"name": "tea", "qty": 2}]
    assert py(out["_usage"])[0]["total_tokens"] == 10
    assert "soon" in out["_raw"].iloc[3]


def py(series: Any) -> list[Any]:
    """A pandas column of Arrow values as plain Python values, nulls as None."""
    return list(pa.array(series).to_pylist())


def test_polars_gets_polars_columns_and_a_prefix_keeps_names_apart(client: Client) -> None:
    pl = pytest.importorskip("polars")
    frame = pl.DataFrame({"body": TEXTS, "customer": ["given"] * len(TEXTS)})
    with pytest.raises(ConfigurationError, match=r"already has column.*'customer'.*prefix="):
        extract(frame, Order, column="body", client=client)
    out = extract(frame, Order, column="body", client=client, prefix="x_")
    assert out.height == len(TEXTS) and out["customer"].to_list() == ["given"] * len(TEXTS)
    assert out["x_customer"].to_list() == ["Ann", None, "Cy", None, "Ed", "Flo"]
    assert out.schema["x_day"] == pl.Date
    assert out.schema["x_items"] == pl.List(pl.Struct({"name": pl.String, "qty": pl.Int64}))
    assert out["x__error_type"].to_list() == [
        None,
        "APIStatusError",
        None,
        "RetriesExhausted",
        None,
        None,
    ]


def test_aextract_runs_on_the_running_loop(client: Client) -> None:
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"text": TEXTS})

    async def main() -> Any:
        try:
            return await aextract(frame, Order, client=client)
        finally:
            await client.aclose_loop()

    out = asyncio.run(main())
    assert py(out["customer"])[:3] == ["Ann", None, "Cy"]

    async def inside() -> None:
        extract(frame, Order, client=client)

    with pytest.raises(ConfigurationError, match="running event loop"):
        asyncio.run(inside())


def test_what_is_not_a_frame_or_has_no_such_column_is_refused(client: Client) -> None:
    pl = pytest.importorskip("polars")
    with pytest.raises(ConfigurationError, match="pandas or polars DataFrame, not a list"):
        extract(["text"], Order, client=client)
    with pytest.raises(ConfigurationError, match=r"collect\(\) a LazyFrame"):
        extract(pl.LazyFrame({"text": ["a"]}), Order, client=client)
    with pytest.raises(ConfigurationError, match=r"no column 'text'.*'body'"):
        extract(pl.DataFrame({"body": ["a"]}), Order, client=client)
