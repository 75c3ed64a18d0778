"""Batch jobs: many documents, paced to the provider's limits, resumable, nothing lost.

- `sources`: documents read lazily from a folder, a JSONL or CSV file, or stdin.
- `store`: the append-only output and failures files; resume and torn-line repair.
- `limiter`: requests and tokens per minute, job-wide 429 backoff, adaptive concurrency.
- `runner`: the bounded window of documents in flight; `extract_many`.
- `job`: `BatchJob`, the file-based job behind `extractor batch`.
- `command`: the `extractor batch` command itself (its options are in `extractor._cli`).

`Client.extract_many` / `aextract_many` (and the same on `@extractable` classes) are the
library's entry points; `extractor batch` is the command line's.
"""

from extractor.batch._job import BatchJob, Summary, failures_path
from extractor.batch._limiter import Limiter
from extractor.batch._runner import BatchResult
from extractor.batch._sources import Document, DocumentError, Source, SourceError, open_source
from extractor.batch._store import Store, StoreError

__all__ = [
    "BatchJob",
    "BatchResult",
    "Document",
    "DocumentError",
    "Limiter",
    "Source",
    "SourceError",
    "Store",
    "StoreError",
    "Summary",
    "failures_path",
    "open_source",
]
