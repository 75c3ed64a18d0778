"""Parquet output for a batch job: a folder of complete part files, and a journal beside it.

`extractor batch ... -o out.parquet` writes a Parquet dataset, as Spark does: a folder
that pyarrow, pandas, polars and DuckDB read as one table (`pd.read_parquet("out.parquet")`,
`pl.read_parquet("out.parquet")`, `SELECT * FROM 'out.parquet/*.parquet'`):

    out.parquet/part-00000.parquet    one row group of up to ROWS_PER_PART records each
    out.parquet/part-00001.parquet
    out.parquet.pending.jsonl         records not yet in a part (the journal)
    out.failures.jsonl                failures, as for a JSONL output

The folder holds nothing but complete part files, at every moment (polars refuses a
folder with other files in it): a part is written beside the folder, fsynced, then
renamed into it. Each record is first appended to the journal, with the JSONL store's
single-write discipline (`Store`), so a `kill -9` loses nothing finished and leaves at
most a torn last line, cut off on resume. When the journal holds ROWS_PER_PART records
(or PART_BYTES), they become the next part and the journal is emptied; at the job's end
the rest do. A resumed job goes on appending to the journal it finds. Memory stays flat:
the journal is read back in slices, and at most one row group is held, as Arrow data.

A kill between a part's rename and the journal's truncation leaves rows in both: the
part counts, and its rows are skipped when the journal next becomes a part.

Resume reads the `id` column of each part, the journal's and the failures file's ids.
Ids are strings in Parquet (`_arrow.result_schema`), so an integer id 7 and "7" are
the same document here. Parts keep the Arrow schema of the first part: a job resumed
under a changed schema (`--schema-changed keep`) writes its records into the same
columns, and what does not fit them whole is kept in `_record_json`.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

from extractor._arrow import FINGERPRINT_KEY, pyarrow, result_schema, rows_to_table, table_rows
from extractor._errors import ConfigurationError
from extractor.batch._store import OutputLock, Store, StoreError

__all__ = [
    "PART_BYTES",
    "ROWS_ENV",
    "ROWS_PER_PART",
    "ParquetStore",
    "is_parquet",
    "journal_path",
    "read_rows",
    "written_fingerprint",
]

logger = logging.getLogger("extractor.batch")

#: Records per part file (one row group): a few MB of Arrow data for receipt-sized records.
#: `EXTRACTOR_PARQUET_ROWS` sets another count (smaller parts show progress sooner).
ROWS_PER_PART: Final = 10_000
ROWS_ENV: Final = "EXTRACTOR_PARQUET_ROWS"
#: Journal bytes that make a part sooner, for large records.
PART_BYTES: Final = 32 * 2**20
#: Journal lines converted to Arrow at a time when a part is made.
_SLICE: Final = 1_000
_PART: Final = re.compile(r"part-(\d{5,})\.parquet")


def is_parquet(path: Path) -> bool:
    """Whether a batch output path names Parquet (it ends in `.parquet`)."""
    return path.suffix.lower() == ".parquet"


def journal_path(output: Path) -> Path:
    """Where records wait for their part: `out.parquet` → `out.parquet.pending.jsonl`."""
    return output.with_name(output.name + ".pending.jsonl")


def _parts(folder: Path) -> list[tuple[int, Path]]:
    """The part files of `folder`, in order."""
    found = []
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        for entry in os.scandir(folder):
            match = _PART.fullmatch(entry.name)
            if match:
                found.append((int(match.group(1)), Path(entry.path)))
    return sorted(found)


def _temporary(output: Path) -> list[Path]:
    """Parts being written when a job was killed (beside the folder, never in it)."""
    prefix = output.name + ".part-"
    with contextlib.suppress(FileNotFoundError):
        return [p for p in output.parent.iterdir() if p.name.startswith(prefix)]
    return []


class _Ids(dict[str, bool]):
    """Done ids keyed by their text: the job looks them up by `int` or `str` id alike."""

    def get(self, key: Any, default: Any = None) -> Any:
        return super().get(str(key), default)

    def __contains__(self, key: object) -> bool:
        return super().__contains__(str(key))


class ParquetStore:
    """The Parquet output and the failures file of one job; the interface of `Store`.

    `target` fixes the Arrow schema of a new output. `restart` empties the folder, the
    journal and the failures file; `retry_failures` the failures file only.
    `rows_per_part` defaults to `EXTRACTOR_PARQUET_ROWS`, else `ROWS_PER_PART`.
    """

    def __init__(
        self,
        output: Path,
        failures: Path,
        target: Any,
        *,
        restart: bool = False,
        retry_failures: bool = False,
        rows_per_part: int | None = None,
    ) -> None:
        self._pa = pyarrow()  # missing pyarrow: a ConfigurationError before anything
        self._pq = _parquet_module()
        if output.exists() and not output.is_dir():
            raise StoreError(
                f"{output} is a file; a Parquet output is a folder of part files written "
                "by this program: choose another path, or remove that file"
            )
        self.output = output
        self.failures = failures
        self.journal = journal_path(output)
        self.rows_per_part = rows_per_part or _rows_per_part()
        self._lock = OutputLock(output)
        self._store: Store | None = None
        #: Whether this run added a record. If not, `close` makes the journal a part only
        #: when its rows were written under the parts' schema: a job stopped at the schema
        #: check changes nothing; one that found every document done still completes.
        self._wrote = False
        try:
            self._lock.acquire()
            self._open(target, restart=restart, retry_failures=retry_failures)
        except BaseException:
            self.close(flush=False)
            raise

    def _open(self, target: Any, *, restart: bool, retry_failures: bool) -> None:
        output = self.output
        try:
            output.mkdir(parents=True, exist_ok=True)
            for stale in _temporary(output):
                stale.unlink()
            if restart:
                for _, part in _parts(output):
                    part.unlink()
        except OSError as exc:
            raise StoreError(f"cannot write {output}: {exc.strerror or exc}") from None
        self._store = store = Store(
            self.journal, self.failures, restart=restart, retry_failures=retry_failures
        )
        parts = _parts(output)
        self._next = parts[-1][0] + 1 if parts else 0
        self._in_parts: set[str] = set()
        for _, part in parts:
            self._in_parts.update(_part_ids(self._pq, part))
        self.done = _Ids({str(k): v for k, v in store.done.items()})
        self.done.update(dict.fromkeys(self._in_parts, True))
        self.repaired = store.repaired
        self.repeated = store.repeated
        # the columns of the first part, so one folder is one table; else the target's
        self.schema = self._pq.read_schema(parts[0][1]) if parts else result_schema(target)
        self._pending = _journal_lines(self.journal)

    def write(self, line: dict[str, Any], *, ok: bool) -> None:
        """Append a record to the journal (a part when it is full), a failure to its file."""
        assert self._store is not None
        self._store.write(line, ok=ok)
        if ok:
            self._pending += 1
            self._wrote = True
            if self._pending >= self.rows_per_part or self._journal_bytes() >= PART_BYTES:
                self.flush()

    def _journal_bytes(self) -> int:
        try:
            return self.journal.stat().st_size
        except OSError:
            return 0

    def sync(self) -> None:
        """Push the journal and the failures file to the disk (fsync)."""
        if self._store is not None:
            self._store.sync()

    def flush(self) -> None:
        """Turn the journal's records into the next part file, then empty the journal."""
        if self._pending == 0 or self._store is None:
            return
        pa, pq = self._pa, self._pq
        tables = []
        count = 0
        ids: set[str] = set()
        for rows in _journal_slices(self.journal):
            fresh = []
            for row in rows:
                doc_id = str(row.get("id"))
                if doc_id not in self._in_parts and doc_id not in ids:  # already in a part
                    ids.add(doc_id)
                    fresh.append(row)
            if fresh:
                tables.append(rows_to_table(fresh, self.schema))
                count += len(fresh)
        if tables:
            table = pa.concat_tables(tables)
            name = f"part-{self._next:05d}.parquet"
            temporary = self.output.with_name(f"{self.output.name}.{name}.tmp")
            final = self.output / name
            try:
                with open(temporary, "wb") as handle:
                    pq.write_table(table, handle, row_group_size=max(count, 1))
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(temporary, final)
                _fsync_folder(self.output)
            except OSError as exc:
                with contextlib.suppress(OSError):
                    temporary.unlink()
                raise StoreError(
                    f"cannot write {final}: {exc.strerror or exc}; fix that (a full disk?), "
                    "then run the same job again: it resumes"
                ) from None
            self._next += 1
            self._in_parts |= ids
            logger.debug("wrote %s: %d record(s)", final, count)
        with open(self.journal, "r+b") as journal:  # the part holds them now
            journal.truncate(0)
            os.fsync(journal.fileno())
        self._pending = 0

    def close(self, *, flush: bool = True) -> None:
        """Make the journal's records a part, close the files, let go; safe to call twice."""
        try:
            if flush and self._store is not None and (self._wrote or self._journal_fits()):
                self.flush()
        finally:
            try:
                if self._store is not None:
                    self._store.close()
                    self._store = None
                    with contextlib.suppress(OSError):  # an empty journal says nothing
                        if self.journal.stat().st_size == 0:
                            self.journal.unlink()
            finally:
                self._lock.release()

    def _journal_fits(self) -> bool:
        if self._pending == 0:
            return False
        written = _first_fingerprint(self.journal)
        return (
            written is not None
            and written == (self.schema.metadata or {}).get(FINGERPRINT_KEY, b"").decode()
        )

    def __enter__(self) -> ParquetStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _rows_per_part() -> int:
    raw = os.environ.get(ROWS_ENV, "").strip()
    if not raw:
        return ROWS_PER_PART
    try:
        count = int(raw)
    except ValueError:
        count = 0
    if count < 1:
        raise ConfigurationError(
            f"{ROWS_ENV} must be a whole number of rows, 1 or more, not {raw!r}"
        )
    return count


def _parquet_module() -> Any:
    pyarrow()  # missing: the message that says how to install it
    return importlib.import_module("pyarrow.parquet")


def _part_ids(pq: Any, part: Path) -> list[str]:
    try:
        column = pq.ParquetFile(part).read(columns=["id"]).column("id")
    except Exception as exc:  # pyarrow raises its own kinds for a broken file
        raise StoreError(
            f"{part} cannot be read as a part this program wrote ({exc}); "
            "move it out of the folder, then run again"
        ) from None
    return [str(i) for i in column.to_pylist() if i is not None]


def _journal_lines(journal: Path) -> int:
    count = 0
    with contextlib.suppress(FileNotFoundError), open(journal, "rb") as lines:
        for _ in lines:
            count += 1
    return count


def _journal_slices(journal: Path) -> Iterator[list[dict[str, Any]]]:
    """The journal's rows, `_SLICE` at a time (every line whole: the store repaired it)."""
    rows: list[dict[str, Any]] = []
    with open(journal, "rb") as lines:
        for line in lines:
            if line.strip():
                rows.append(json.loads(line))
            if len(rows) >= _SLICE:
                yield rows
                rows = []
    if rows:
        yield rows


def _fsync_folder(folder: Path) -> None:
    """Make a rename into `folder` durable (POSIX); nothing to do where folders cannot open."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def written_fingerprint(output: Path) -> str | None:
    """The schema fingerprint of the first record of a Parquet output (None: no record yet)."""
    parts = _parts(output)
    if parts:
        pq = _parquet_module()
        with contextlib.suppress(Exception):  # unreadable: the store has said so already
            column = pq.ParquetFile(parts[0][1]).read_row_group(0, columns=["_schema"])
            for value in column.column("_schema").to_pylist():
                if isinstance(value, str):
                    return value
        return None
    return _first_fingerprint(journal_path(output))


def _first_fingerprint(journal: Path) -> str | None:
    try:
        with journal.open("rb") as lines:
            first = lines.readline()
        written = json.loads(first).get("schema") if first.strip() else None
    except (OSError, ValueError, AttributeError):
        return None
    return written if isinstance(written, str) else None


def read_rows(path: Path) -> Iterator[dict[str, Any]]:
    """The rows of a Parquet file or output folder (and its journal), as JSON lines.

    One row group at a time: memory does not grow with the output. Raises `StoreError`
    for a file that is not Parquet.
    """
    pq = _parquet_module()
    files = [path] if path.is_file() else [p for _, p in _parts(path)]
    if path.is_dir() and not files:
        files = sorted(p for p in path.iterdir() if p.suffix == ".parquet")
    for file in files:
        try:
            parquet = pq.ParquetFile(file)
        except Exception as exc:  # pyarrow raises its own kinds for a broken file
            raise StoreError(f"{file} cannot be read as Parquet: {exc}") from None
        for group in range(parquet.num_row_groups):
            yield from table_rows(parquet.read_row_group(group))
    journal = journal_path(path)
    if path.is_dir() and journal.exists():
        with journal.open("rb") as lines:
            for line in lines:
                with contextlib.suppress(ValueError):  # a torn last line: not a record yet
                    row = json.loads(line)
                    if isinstance(row, dict):
                        row["id"] = None if row.get("id") is None else str(row["id"])
                        yield row
