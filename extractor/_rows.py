"""One document's result as a row: the dict a batch job writes as a JSON line.

The JSONL output, the Parquet output (`_arrow.rows_to_table`), dataframes and Ray all
take their rows from `result_row`, so a record looks the same wherever it lands:

- a record: `id`, `record` (the target's value as JSON data), `usage`, `attempts`,
  `model`, `mode`, `elapsed_s`, `schema` (the fingerprint), and for a document read in
  chunks `chunks`, `pages` and maybe `conflicts`;
- a failure: `id`, `error` (`type`, `message`), `attempts`, `raw` (the last answer),
  `usage`, `model`, `elapsed_s`, `schema`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pydantic_core

from extractor._parts import LongExtraction

if TYPE_CHECKING:
    from extractor._result import Usage
    from extractor.batch._runner import BatchResult

__all__ = ["result_row", "usage_row"]


def result_row(
    result: BatchResult[Any],
    *,
    fingerprint: str | None,
    dump: Callable[[Any], Any] | None = None,
    usage: Usage | None = None,
) -> dict[str, Any]:
    """`result` as the line a batch job writes; `schema` is left out when `fingerprint` is None.

    `dump` turns the record into JSON data (the target's `CompiledSchema.dump`); without
    it, Pydantic's `to_jsonable_python`, the same for models and plain types. `usage`
    replaces the result's own (a job fills in costs from its prices).
    """
    usage = result.usage if usage is None else usage
    extraction = result.extraction
    if extraction is not None:
        record = (dump or pydantic_core.to_jsonable_python)(extraction.value)
        row: dict[str, Any] = {
            "id": result.id,
            "record": record,
            "usage": usage_row(usage),
            "attempts": len(extraction.attempts),
            "model": extraction.model,
            "mode": extraction.mode,
            "elapsed_s": round(result.elapsed_s, 3),
        }
        if fingerprint is not None:
            row["schema"] = fingerprint
        if isinstance(extraction, LongExtraction):  # read in chunks: where values came from
            row["chunks"] = len(extraction.parts)
            row["pages"] = {path: list(s.pages) for path, s in extraction.provenance.items()}
            if extraction.conflicts:
                row["conflicts"] = [str(c) for c in extraction.conflicts.values()]
        return row
    error = result.error
    row = {
        "id": result.id,
        "error": {"type": type(error).__name__, "message": str(error)},
        "attempts": len(result.attempts),
        "raw": result.raw,
        "usage": usage_row(usage),
        "model": result.model,
        "elapsed_s": round(result.elapsed_s, 3),
    }
    if fingerprint is not None:
        row["schema"] = fingerprint
    return row


def usage_row(usage: Usage) -> dict[str, Any]:
    """Tokens, cost and `cached` (the answers that came from the response cache)."""
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "cost": usage.cost,
        "cached": usage.cached,
    }
