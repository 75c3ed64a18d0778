"""Extraction over a pandas or polars column: each row's record as new columns.

```python
import pandas as pd
from extractor.dataframes import extract

frame = pd.DataFrame({"text": ["Ann Lee, 41, ann@example.com", "Bo, 7"]})
people = extract(frame, Contact, model="openai/gpt-4o-mini")
people[["name", "age", "_error_type"]]
```

The result is a new frame of the same kind, same rows in the same order, with the
record's fields appended as typed columns (the Arrow types of `extractor._arrow`:
a nested model is a struct column, a list a list column, a date a date column), then
the job's columns: `_error_type` and `_error_message` (null for a record), `_attempts`,
`_mode`, `_model`, `_usage`, `_elapsed_s`, `_schema`, `_raw` (the last answer of a
failure), ... . No row is dropped: a row that fails has nulls in the record's
columns and says why in the error columns. A text that is null or not a string fails
that row alone (`DocumentError`).

The documents run concurrently through `Client.aextract_many` (`concurrency` at a
time, `rpm` and `tpm` caps, one 429 slowing them all). pandas comes back with
`pd.ArrowDtype` columns, polars with its own types. Neither library is imported by
`import extractor`, nor this module: the frame's own library is used, found from it.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, TypeVar, cast

from extractor._api import default_client
from extractor._arrow import result_row, result_schema, rows_to_table
from extractor._errors import ConfigurationError, with_article
from extractor._schema import compile_schema
from extractor.batch._sources import Document

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from extractor._client import Client
    from extractor._options import Options
    from extractor.batch._runner import BatchResult

__all__ = ["aextract", "extract"]

F = TypeVar("F")


def extract(
    frame: F,
    target: Any,
    *,
    column: str = "text",
    client: Client | None = None,
    concurrency: int = 16,
    rpm: float | None = None,
    tpm: float | None = None,
    prefix: str = "",
    **options: Unpack[Options],
) -> F:
    """`frame` with a record of `target` extracted from each row's `column`, as new columns.

    `frame` is a pandas or polars `DataFrame`; the result is a new one of the same kind
    (the input is not changed). `prefix` goes before every added column's name, for a
    frame that already has columns of those names (a clash is a `ConfigurationError`).
    `client` defaults to the process-wide one; options are those of `Client.extract`.
    Not inside a running event loop: use `aextract` there.
    """
    kind, texts = _texts(frame, column)
    the_client = client or default_client()
    results = the_client.extract_many(
        target, texts, concurrency=concurrency, rpm=rpm, tpm=tpm, **options
    )
    return cast(F, _joined(kind, frame, target, len(texts), results, prefix))


async def aextract(
    frame: F,
    target: Any,
    *,
    column: str = "text",
    client: Client | None = None,
    concurrency: int = 16,
    rpm: float | None = None,
    tpm: float | None = None,
    prefix: str = "",
    **options: Unpack[Options],
) -> F:
    """The async form of `extract`: the documents run on the running event loop."""
    kind, texts = _texts(frame, column)
    the_client = client or default_client()
    results = [
        result
        async for result in the_client.aextract_many(
            target, texts, concurrency=concurrency, rpm=rpm, tpm=tpm, **options
        )
    ]
    return cast(F, _joined(kind, frame, target, len(texts), results, prefix))


def _kind(frame: Any) -> str:
    """ "pandas" or "polars", from the frame's class: neither library is imported to ask."""
    cls = type(frame)
    library = cls.__module__.partition(".")[0]
    if library in ("pandas", "polars") and cls.__name__ == "DataFrame":
        return library
    hint = " (collect() a LazyFrame first)" if cls.__name__ == "LazyFrame" else ""
    raise ConfigurationError(
        f"expected a pandas or polars DataFrame, not {with_article(cls.__name__)}{hint}"
    )


def _texts(frame: Any, column: str) -> tuple[str, list[Any]]:
    """The frame's library, and each row's (position, text), or a failure for a null."""
    kind = _kind(frame)
    if column not in frame.columns:
        shown = ", ".join(map(repr, list(frame.columns)[:20]))
        raise ConfigurationError(
            f"the frame has no column {column!r} (it has {shown}); name the text column "
            "with column="
        )
    values = frame[column].tolist() if kind == "pandas" else frame.get_column(column).to_list()
    texts = [
        Document(i, problem=f"the {column!r} value is null: nothing to extract")
        if _is_null(value)
        else (i, value)
        for i, value in enumerate(values)
    ]
    return kind, texts


def _is_null(value: Any) -> bool:
    """None, NaN, pandas' NA or NaT: a missing value, whichever library wrote it."""
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    return type(value).__name__ in ("NAType", "NaTType")


def _joined(
    kind: str,
    frame: Any,
    target: Any,
    count: int,
    results: Iterable[BatchResult[Any]],
    prefix: str,
) -> Any:
    """The frame with the results' columns appended, each result at its row's position."""
    compiled = compile_schema(target)
    schema = result_schema(target)
    rows: list[dict[str, Any] | None] = [None] * count
    for result in results:
        rows[result.id] = result_row(result, fingerprint=compiled.fingerprint, dump=compiled.dump)
    assert all(row is not None for row in rows), "every row has its result"
    table = rows_to_table([row for row in rows if row is not None], schema).drop_columns(["id"])
    names = [prefix + name for name in table.column_names]
    clash = sorted(set(names) & {str(c) for c in frame.columns})
    if clash:
        raise ConfigurationError(
            f"the frame already has column(s) {', '.join(map(repr, clash))}; "
            "pass prefix= to name the new ones apart"
        )
    table = table.rename_columns(names)
    if kind == "pandas":
        pandas = importlib.import_module("pandas")
        added = table.to_pandas(types_mapper=pandas.ArrowDtype)
        return frame.assign(**{name: added[name].array for name in names})
    polars = importlib.import_module("polars")
    return frame.hstack(polars.from_arrow(table).get_columns())
