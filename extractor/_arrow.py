"""Arrow types from a target's JSON Schema, and batch result rows as Arrow tables.

The record's type is read from the JSON Schema the target compiles to (a Pydantic
model and a JSON Schema dict alike, `$ref`s resolved), field by field:

    string → string          format "date" → date32        integer → int64
    number → float64         boolean → bool                array → list<item>
    object with properties → struct                         enum/const of one kind → it
    anyOf/oneOf with null → the other member (every field is nullable anyway)

"date-time" stays a string: a record may hold times with and without a UTC offset,
and an Arrow timestamp column has one time zone (or none) for all its values, so
converting would either fail or silently shift some. What has no single Arrow type (a
union of different types, a free-form object, `{}`, a tuple, a recursive reference)
is a string holding the value as JSON text; its field carries the metadata
`extractor.json: 1` so readers (`table_rows`, `extractor validate`) decode it.

A result row (`result_schema`) is `id`, the record's top-level fields as columns, then
the job's columns, all starting with an underscore. pyarrow is imported only when one of
these functions runs: `import extractor` never loads it.
"""

from __future__ import annotations

import datetime
import importlib
import json
import logging
import math
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Final

from extractor._errors import ConfigurationError
from extractor._rows import result_row  # here too: the Arrow paths' one row shape
from extractor._schema import compile_schema

__all__ = [
    "EXTRA",
    "FINGERPRINT_KEY",
    "JOB_COLUMNS",
    "JSON_KEY",
    "LAYOUT_KEY",
    "SCHEMA_KEY",
    "WRAP_KEY",
    "pyarrow",
    "record_type",
    "result_row",
    "result_schema",
    "rows_to_table",
    "table_rows",
]

#: The package extra that brings pyarrow.
EXTRA: Final = "arrow"
#: Field metadata key marking a string field that holds JSON text.
JSON_KEY: Final = b"extractor.json"
#: Schema metadata: the target's JSON Schema, its fingerprint, and how the record is laid out.
SCHEMA_KEY: Final = b"extractor.schema"
FINGERPRINT_KEY: Final = b"extractor.fingerprint"
LAYOUT_KEY: Final = b"extractor.layout"
WRAP_KEY: Final = b"extractor.wrap_key"

#: The job's columns after the record's, in order. `_record_json` is null unless the
#: record did not fit its columns (then it holds the whole record as JSON text).
JOB_COLUMNS: Final = (
    "_error_type",
    "_error_message",
    "_attempts",
    "_mode",
    "_model",
    "_usage",
    "_elapsed_s",
    "_schema",
    "_raw",
    "_chunks",
    "_pages",
    "_conflicts",
    "_record_json",
)

logger = logging.getLogger("extractor")

_INT64: Final = (-(2**63), 2**63 - 1)
_JSON_META: Final = {JSON_KEY: b"1"}


def pyarrow() -> Any:
    """The `pyarrow` module, or a `ConfigurationError` saying how to install it.

    Typed `Any`: pyarrow ships no type information.
    """
    try:
        return importlib.import_module("pyarrow")
    except ImportError:
        raise ConfigurationError(
            f'Arrow and Parquet output need pyarrow: pip install "extractor[{EXTRA}]"'
        ) from None


# --- types ----------------------------------------------------------------------------------


class _Types:
    """Maps JSON Schema nodes to Arrow fields; `$defs` resolved, recursion as JSON text."""

    def __init__(self, pa: Any, defs: Mapping[str, Any]) -> None:
        self.pa = pa
        self.defs = defs

    def field(self, name: str, node: Any, seen: frozenset[str] = frozenset()) -> Any:
        kind = self.kind(node, seen)
        if kind is None:
            return self.pa.field(name, self.pa.string(), metadata=_JSON_META)
        return self.pa.field(name, kind)

    def kind(self, node: Any, seen: frozenset[str]) -> Any:
        """The Arrow type of `node`, or None for "JSON text"."""
        pa = self.pa
        if not isinstance(node, dict):
            return None  # `true` or garbage: any value
        ref = node.get("$ref")
        if isinstance(ref, str):
            name = ref.rsplit("/", 1)[-1]
            if name in seen or name not in self.defs:
                return None  # recursive (Arrow types are finite) or unknown
            return self.kind(self.defs[name], seen | {name})
        all_of = node.get("allOf")
        if isinstance(all_of, list):
            return self.kind(all_of[0], seen) if len(all_of) == 1 else None
        members = node.get("anyOf", node.get("oneOf"))
        if isinstance(members, list):
            kinds = [self.kind(m, seen) for m in members if not _is_null(m)]
            return _same(kinds)
        if "const" in node:
            return _value_kind(pa, [node["const"]])
        if isinstance(node.get("enum"), list):
            return _value_kind(pa, [v for v in node["enum"] if v is not None])
        types = node.get("type")
        if isinstance(types, list):
            named = [t for t in types if t != "null"]
            if set(named) == {"integer", "number"}:
                return pa.float64()
            if len(named) != 1:
                return None
            types = named[0]
        if types is None:
            types = "object" if "properties" in node else "array" if "items" in node else None
        if types == "string":
            return pa.date32() if node.get("format") == "date" else pa.string()
        if types == "integer":
            return pa.int64()
        if types == "number":
            return pa.float64()
        if types == "boolean":
            return pa.bool_()
        if types == "array":
            items = node.get("items")
            if "prefixItems" in node or not isinstance(items, dict):
                return None  # a tuple, or items of any kind
            return pa.list_(self.field("item", items, seen))
        if types == "object":
            props = node.get("properties")
            extra = node.get("additionalProperties", False)
            if not isinstance(props, dict) or not props or extra not in (False, None):
                return None  # free-form: keys not known in advance
            if "patternProperties" in node:
                return None
            return pa.struct([self.field(k, v, seen) for k, v in props.items()])
        return None


def _is_null(node: Any) -> bool:
    return isinstance(node, dict) and (node.get("type") == "null" or node == {"const": None})


def _same(kinds: list[Any]) -> Any:
    """The one type all members share, else None (JSON text)."""
    if not kinds or any(k is None for k in kinds):
        return None
    first = kinds[0]
    return first if all(k.equals(first) for k in kinds[1:]) else None


def _value_kind(pa: Any, values: list[Any]) -> Any:
    """The type of an enum's or const's values: strings, booleans, integers or numbers."""
    if not values:
        return None
    if all(isinstance(v, str) for v in values):
        return pa.string()
    if all(isinstance(v, bool) for v in values):
        return pa.bool_()
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return pa.int64()
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return pa.float64()
    return None


def _layout(target: Any) -> tuple[Any, str | None, Any]:
    """The record struct, the key the record is wrapped under (if any), the compiled target."""
    pa = pyarrow()
    compiled = compile_schema(target)
    schema = compiled.schema
    types = _Types(pa, schema.get("$defs", {}))
    root = types.kind({k: v for k, v in schema.items() if k != "$defs"}, frozenset())
    if root is not None and pa.types.is_struct(root):
        return root, compiled.wrap_key, compiled
    # an object of keys not known in advance: the whole record is one JSON column
    return pa.struct([types.field("record", True)]), "record", compiled


def record_type(target: Any) -> Any:
    """The record's fields as an Arrow `StructType` (every field nullable).

    A target whose root is not an object (`list[Item]`, a union) is the object the model
    is asked for: one field, `items` or `value`. A free-form object is one JSON field,
    `record`.
    """
    return _layout(target)[0]


def result_schema(target: Any) -> Any:
    """The Arrow schema of one result row: `id`, the record's fields, the job's columns.

    `id` is a string: a batch's ids are strings or integers (a JSONL input keeps a number
    id as a number) and an Arrow column has one type, so an integer id is its decimal
    text (so ids 1 and "1" are the same id in Arrow). When a record field is named `id`
    or like a job column, the whole record is one struct column `record` instead (with
    a warning), so no name means two things. The schema's metadata holds the target's
    JSON Schema (`extractor.schema`) and fingerprint, and how the record is laid out.
    """
    pa = pyarrow()
    record, wrap, compiled = _layout(target)
    fields = list(record)
    names = {f.name for f in fields}
    clash = sorted(names & {"id", *JOB_COLUMNS})
    if clash:
        warnings.warn(
            f"{compiled.name} has field(s) named {', '.join(clash)}, as result columns are: "
            "its Arrow rows hold the whole record in one struct column, `record`",
            UserWarning,
            stacklevel=2,
        )
        fields = [pa.field("record", record)]
    usage = pa.struct(
        [
            pa.field("prompt_tokens", pa.int64()),
            pa.field("completion_tokens", pa.int64()),
            pa.field("total_tokens", pa.int64()),
            pa.field("cost", pa.float64()),
            pa.field("cached", pa.int64()),
        ]
    )
    job = [
        pa.field("_error_type", pa.string()),
        pa.field("_error_message", pa.string()),
        pa.field("_attempts", pa.int32()),
        pa.field("_mode", pa.string()),
        pa.field("_model", pa.string()),
        pa.field("_usage", usage),
        pa.field("_elapsed_s", pa.float64()),
        pa.field("_schema", pa.string()),
        pa.field("_raw", pa.string()),
        pa.field("_chunks", pa.int32()),
        pa.field("_pages", pa.string(), metadata=_JSON_META),
        pa.field("_conflicts", pa.list_(pa.string())),
        pa.field("_record_json", pa.string(), metadata=_JSON_META),
    ]
    metadata = {
        SCHEMA_KEY: json.dumps(compiled.schema, ensure_ascii=False).encode(),
        FINGERPRINT_KEY: compiled.fingerprint.encode(),
        LAYOUT_KEY: b"record" if clash else b"columns",
    }
    if wrap is not None:
        metadata[WRAP_KEY] = wrap.encode()
    return pa.schema([pa.field("id", pa.string()), *fields, *job], metadata=metadata)


# --- rows to Arrow --------------------------------------------------------------------------

#: Turns a JSON value into what pyarrow takes for a field: (value, True), or (None, False)
#: when it does not fit the field's type.
_Fit = Callable[[Any], "tuple[Any, bool]"]


def _fitter(pa: Any, field: Any) -> _Fit:
    kind = field.type
    if field.metadata and field.metadata.get(JSON_KEY):
        return _json_fit
    if pa.types.is_struct(kind):
        children: list[tuple[str, _Fit, Any, bool]] = [
            (child.name, _fitter(pa, child), *_exact(pa, child)) for child in kind
        ]
        names = frozenset(child.name for child in kind)
        low, high = _INT64

        def fit_struct(value: Any) -> tuple[Any, bool]:
            if value is None:
                return None, True
            if not isinstance(value, dict):
                return None, False
            out = {}
            whole = value.keys() <= names
            for name, fit, exact, bounded in children:
                element = value.get(name)
                # the common case, inline: a value already of the column's Python type
                if element is None or (
                    type(element) is exact and (not bounded or low <= element <= high)
                ):
                    out[name] = element
                else:
                    out[name], ok = fit(element)
                    whole = whole and ok
            return out, whole

        return fit_struct
    if pa.types.is_list(kind):
        item = _fitter(pa, kind.value_field)
        exact, bounded = _exact(pa, kind.value_field)

        def fit_list(value: Any) -> tuple[Any, bool]:
            if value is None:
                return None, True
            if not isinstance(value, list):
                return None, False
            if exact is not None and not bounded and all(type(e) is exact for e in value):
                return value, True
            out = []
            whole = True
            for element in value:
                converted, ok = item(element)
                out.append(converted)
                whole = whole and ok
            return out, whole

        return fit_list
    for check, fit in (
        (pa.types.is_string, _string_fit),
        (pa.types.is_int64, _int_fit),
        (pa.types.is_int32, _int_fit),
        (pa.types.is_float64, _float_fit),
        (pa.types.is_boolean, _bool_fit),
        (pa.types.is_date32, _date_fit),
    ):
        if check(kind):
            return fit
    raise AssertionError(f"no conversion for the Arrow type {kind}")  # pragma: no cover


def _exact(pa: Any, field: Any) -> tuple[type | None, bool]:
    """The Python type pyarrow takes as it is for `field`, and whether ints need bounds."""
    kind = field.type
    if field.metadata and field.metadata.get(JSON_KEY):
        return None, False
    if pa.types.is_string(kind):
        return str, False
    if pa.types.is_boolean(kind):
        return bool, False
    if pa.types.is_float64(kind):
        return float, False
    if pa.types.is_int64(kind):
        return int, True
    return None, False


def _json_fit(value: Any) -> tuple[Any, bool]:
    if value is None:
        return None, True
    return json.dumps(value, ensure_ascii=False), True


def _string_fit(value: Any) -> tuple[Any, bool]:
    return (value, True) if value is None or isinstance(value, str) else (None, False)


def _int_fit(value: Any) -> tuple[Any, bool]:
    if value is None:
        return None, True
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # 3.0 is an integer to JSON Schema
    if isinstance(value, int) and not isinstance(value, bool) and _INT64[0] <= value <= _INT64[1]:
        return value, True
    return None, False


def _float_fit(value: Any) -> tuple[Any, bool]:
    if value is None:
        return None, True
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            converted = float(value)
        except OverflowError:  # an integer beyond any float
            return None, False
        return (converted, True) if math.isfinite(converted) else (None, False)
    return None, False


def _bool_fit(value: Any) -> tuple[Any, bool]:
    return (value, True) if value is None or isinstance(value, bool) else (None, False)


def _date_fit(value: Any) -> tuple[Any, bool]:
    if value is None:
        return None, True
    if not isinstance(value, str):
        return None, False
    try:
        day = datetime.date.fromisoformat(value)
    except ValueError:
        return None, False
    # another spelling of the day (20240102) would come back changed: keep it whole
    return (day, True) if day.isoformat() == value else (None, False)


def rows_to_table(rows: Sequence[Mapping[str, Any]], schema: Any) -> Any:
    """Batch result rows (`result_row`'s dicts, or JSON lines read back) as an Arrow table.

    No row is dropped and nothing raises for a value that does not fit its column (a
    line written under another schema, an integer beyond int64, a key the schema does
    not name): the value is null in its column, and that row's `_record_json` holds the
    whole record as JSON text, so what the columns lost is still there. `_record_json`
    is null for every record that fits.
    """
    pa = pyarrow()
    metadata = schema.metadata or {}
    wrap = metadata.get(WRAP_KEY, b"").decode() or None
    whole = metadata.get(LAYOUT_KEY) == b"record"
    record_fields = [f for f in schema if f.name != "id" and f.name not in JOB_COLUMNS]
    if whole:
        fit_record = _fitter(pa, record_fields[0])
    else:
        fit_record = _fitter(pa, pa.field("record", pa.struct(record_fields)))
    fit_usage = _fitter(pa, schema.field("_usage"))
    columns: dict[str, list[Any]] = {f.name: [] for f in schema}
    unfit = 0
    for row in rows:
        doc_id = row.get("id")
        columns["id"].append(None if doc_id is None else str(doc_id))
        has_record = "record" in row
        record = row.get("record")
        value, fits = fit_record({wrap: record} if wrap and has_record else record)
        if has_record and value is None:
            fits = False
        if whole:
            columns[record_fields[0].name].append(value)
        else:
            for field in record_fields:
                columns[field.name].append(None if value is None else value[field.name])
        error = row.get("error")
        error = error if isinstance(error, dict) else {}
        columns["_error_type"].append(_text(error.get("type")))
        columns["_error_message"].append(_text(error.get("message")))
        columns["_attempts"].append(_count(row.get("attempts")))
        columns["_mode"].append(_text(row.get("mode")))
        columns["_model"].append(_text(row.get("model")))
        usage = row.get("usage")
        if isinstance(usage, dict) and "cached" not in usage:
            usage = {**usage, "cached": 0}
        columns["_usage"].append(fit_usage(usage)[0])
        columns["_elapsed_s"].append(_float_fit(row.get("elapsed_s"))[0])
        columns["_schema"].append(_text(row.get("schema")))
        columns["_raw"].append(_text(row.get("raw")))
        columns["_chunks"].append(_count(row.get("chunks")))
        pages = row.get("pages")
        columns["_pages"].append(None if pages is None else json.dumps(pages, ensure_ascii=False))
        conflicts = row.get("conflicts")
        columns["_conflicts"].append(
            [str(c) for c in conflicts] if isinstance(conflicts, list) else None
        )
        lost = has_record and not fits
        unfit += lost
        columns["_record_json"].append(json.dumps(record, ensure_ascii=False) if lost else None)
    if unfit:
        logger.warning(
            "%d record(s) do not fit the Arrow columns of the schema (written under another "
            "schema?): their columns hold what fits, `_record_json` the whole record",
            unfit,
        )
    arrays = [pa.array(columns[f.name], type=f.type) for f in schema]
    return pa.Table.from_arrays(arrays, schema=schema)


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _count(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**31:
        return value
    return None


# --- Arrow back to rows ---------------------------------------------------------------------


def table_rows(table: Any) -> Iterator[dict[str, Any]]:
    """Rows of a result table (or record batch) as the JSON lines a batch job writes.

    The inverse of `rows_to_table` as far as JSON goes: dates come back as ISO text, JSON
    text columns decoded, a record that did not fit its columns from `_record_json`, and
    null columns of a record as null keys (absent optional fields read None). An id is a
    string. A row with an `_error_type` is a failure (no `record`).
    """
    pa = pyarrow()
    schema = table.schema
    metadata = schema.metadata or {}
    wrap = metadata.get(WRAP_KEY, b"").decode() or None
    whole = metadata.get(LAYOUT_KEY) == b"record"
    record_fields = [f for f in schema if f.name != "id" and f.name not in JOB_COLUMNS]
    plain = _plainer(pa, pa.struct(record_fields)) if not whole else None
    whole_plain = _plainer(pa, record_fields[0].type) if whole and record_fields else None
    pages_json = _plainer(pa, pa.string(), json_text=True)
    for batch in table.to_batches() if hasattr(table, "to_batches") else [table]:
        for raw in batch.to_pylist():
            row: dict[str, Any] = {"id": raw.get("id")}
            if raw.get("_error_type") is None:
                if raw.get("_record_json") is not None:
                    record = json.loads(raw["_record_json"])
                else:
                    if whole_plain is not None:
                        record = whole_plain(raw.get(record_fields[0].name))
                    else:
                        assert plain is not None
                        record = plain({f.name: raw.get(f.name) for f in record_fields})
                    if wrap is not None and isinstance(record, dict):
                        record = record.get(wrap)
                row["record"] = record
            else:
                row["error"] = {"type": raw["_error_type"], "message": raw.get("_error_message")}
                row["raw"] = raw.get("_raw")
            for key in ("attempts", "model", "mode", "elapsed_s", "schema", "chunks", "conflicts"):
                value = raw.get(f"_{key}")
                if value is not None:
                    row[key] = value
            if raw.get("_usage") is not None:
                row["usage"] = dict(raw["_usage"])
            if raw.get("_pages") is not None:
                row["pages"] = pages_json(raw["_pages"])
            yield row


def _plainer(pa: Any, kind: Any, *, json_text: bool = False) -> Callable[[Any], Any]:
    """Turns a value pyarrow gives back for `kind` into plain JSON data."""
    if json_text:
        return lambda v: None if v is None else json.loads(v)
    if pa.types.is_struct(kind):
        children = [
            (
                child.name,
                _plainer(pa, child.type, json_text=bool((child.metadata or {}).get(JSON_KEY))),
            )
            for child in kind
        ]
        return lambda v: None if v is None else {name: f(v.get(name)) for name, f in children}
    if pa.types.is_list(kind):
        item_field = kind.value_field
        item = _plainer(
            pa, item_field.type, json_text=bool((item_field.metadata or {}).get(JSON_KEY))
        )
        return lambda v: None if v is None else [item(e) for e in v]
    if pa.types.is_date32(kind):
        return lambda v: None if v is None else v.isoformat()
    return lambda v: v
