"""The two append-only files of a batch job, and resuming from them.

Every finished document becomes one JSON line, in the output file (a record) or in the
failures file (why not), written with a single `write` on a file opened for appending:
a killed process leaves at most the last line torn, never a line half-mixed with
another. Lines are flushed to the operating system as they are written, so they survive
`kill -9`; they are fsynced once a second and when the job ends, so a power cut loses at
most the last second (those documents are simply extracted again).

On resume both files are read once, for ids only: the records themselves are never
kept. A last line without its newline, or one that does not parse, is what a kill
mid-write leaves: it is cut off (its document runs again). A broken line anywhere else
is not something this program writes, so it stops with the file and line named.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from extractor.errors import ExtractorError

__all__ = ["Store", "StoreError", "scan"]

logger = logging.getLogger("extractor.batch")

#: Seconds between fsyncs of the two files while a job runs.
SYNC_INTERVAL: Final = 1.0


class StoreError(ExtractorError):
    """An output or failures file cannot be used to resume (names the file and line)."""


@dataclass
class Scan:
    """What a file already holds: the ids of its lines, and any torn tail cut off."""

    ids: set[Any] = field(default_factory=set)
    repaired_bytes: int = 0


def scan(path: Path, *, repair: bool = True) -> Scan:
    """Read the ids of `path`'s lines; cut off a torn last line when `repair` is set.

    Raises `StoreError` for a broken line that is not the last.
    """
    found = Scan()
    try:
        handle = open(path, "rb")  # noqa: SIM115  # closed below, after a possible truncate
    except FileNotFoundError:
        return found
    with handle:
        offset = 0
        torn_at: int | None = None
        torn_number = 0
        for number, line in enumerate(handle, 1):
            doc_id = _line_id(line) if line.endswith(b"\n") else _MISSING
            if doc_id is _MISSING:
                if torn_at is None:
                    torn_at, torn_number = offset, number
            elif torn_at is not None:
                raise StoreError(
                    f"{path}, line {torn_number}: not a line this program wrote "
                    "(not a JSON object with an id); fix or delete that line, then run again"
                )
            else:
                found.ids.add(doc_id)
            offset += len(line)
    if torn_at is not None:
        found.repaired_bytes = offset - torn_at
        if repair:
            with open(path, "r+b") as writable:
                writable.truncate(torn_at)
                writable.flush()
                os.fsync(writable.fileno())
            logger.info(  # the job's summary says so too
                "%s: cut off a torn last line (%d bytes) left by an interrupted run; "
                "its document will run again",
                path,
                found.repaired_bytes,
            )
    return found


_MISSING: Final[Any] = object()


def _line_id(line: bytes) -> Any:
    try:
        data = json.loads(line)
    except ValueError:
        return _MISSING
    if not isinstance(data, dict) or "id" not in data:
        return _MISSING
    doc_id = data["id"]
    return doc_id if isinstance(doc_id, (str, int)) and not isinstance(doc_id, bool) else _MISSING


class Store:
    """The output and failures files of one job, open for appending.

    `done` maps every id already in either file to whether it holds a record (True) or
    a failure (False): ids only, however large the files. `restart` empties both files;
    `retry_failures` only the failures file, so those documents run again.
    """

    def __init__(
        self, output: Path, failures: Path, *, restart: bool = False, retry_failures: bool = False
    ) -> None:
        if output.resolve() == failures.resolve():
            raise StoreError(f"the output and failures files are the same file: {output}")
        for path in (output, failures):
            if path.is_dir():
                raise StoreError(f"{path} is a folder; name a file for the JSON lines")
            path.parent.mkdir(parents=True, exist_ok=True)
        self.output = output
        self.failures = failures
        self.done: dict[Any, bool] = {}
        self.repaired: dict[str, int] = {}
        if restart or retry_failures:  # retry: the failed documents are pending again
            for path in (output, failures) if restart else (failures,):
                path.unlink(missing_ok=True)
        for path, ok in ((failures, False), (output, True)):  # a record wins over a failure
            found = scan(path)
            if found.repaired_bytes:
                self.repaired[str(path)] = found.repaired_bytes
            self.done.update(dict.fromkeys(found.ids, ok))
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
        self._fds = {True: os.open(output, flags, 0o644), False: os.open(failures, flags, 0o644)}
        self._dirty = False
        self._synced = time.monotonic()

    def write(self, line: dict[str, Any], *, ok: bool) -> None:
        """Append one document's line to the output (`ok`) or the failures file."""
        data = (json.dumps(line, ensure_ascii=False) + "\n").encode()
        fd = self._fds[ok]
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        self._dirty = True
        if time.monotonic() - self._synced >= SYNC_INTERVAL:
            self.sync()

    def sync(self) -> None:
        """Push both files to the disk (fsync)."""
        if self._dirty:
            for fd in self._fds.values():
                os.fsync(fd)
            self._dirty = False
        self._synced = time.monotonic()

    def close(self) -> None:
        """Sync and close both files; safe to call twice."""
        if self._fds:
            self.sync()
            for fd in self._fds.values():
                os.close(fd)
            self._fds = {}

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
