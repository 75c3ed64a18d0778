"""The two append-only files of a batch job, and resuming from them.

Every finished document becomes one JSON line, in the output file (a record) or in the
failures file (why not), written with a single `write` on a file opened for appending:
a killed process leaves at most the last line torn, never a line half-mixed with
another. Lines are flushed to the operating system as they are written, so they survive
`kill -9`; they are fsynced once a second and when the job ends, so a power cut loses at
most the last second (those documents are simply extracted again).

Each file is held by one job at a time: an exclusive `flock` on `PATH.lock` beside it,
taken before the file is read and kept until the job ends. The operating system drops
the lock when the process dies, however it dies, so a `kill -9` never locks the next
run out; the lock file only says who holds it, for the message a second job prints.

On resume both files are read once, for ids only: the records themselves are never
kept. A last line without its newline, or one that does not parse, is what a kill
mid-write leaves: it is cut off (its document runs again). A broken line anywhere else
is not something this program writes, so it stops with the file and line named. An id
on several lines (two jobs at once before the lock existed) counts once: by its first
line; the later ones are reported and ignored, never run again.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shlex
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from extractor._errors import ExtractorError

if sys.platform != "win32":
    import fcntl

__all__ = ["OutputLock", "Store", "StoreError", "check_writable", "scan"]

logger = logging.getLogger("extractor.batch")

#: Seconds between fsyncs of the two files while a job runs.
SYNC_INTERVAL: Final = 1.0
#: Seconds a job refused by the lock waits for the holder to write who it is.
HOLDER_WAIT: Final = 1.0


class StoreError(ExtractorError):
    """An output or failures file cannot be used: broken, unwritable, or held by another job."""


@dataclass
class Scan:
    """What a file already holds: the ids of its lines, any torn tail cut off, repeats."""

    ids: set[Any] = field(default_factory=set)
    repaired_bytes: int = 0
    #: Lines whose id an earlier line of the file already has (the first one counts).
    repeated: int = 0


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
            elif doc_id in found.ids:
                found.repeated += 1
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


class OutputLock:
    """The exclusive hold of one job on `path`, through the lock file `PATH.lock` beside it.

    `acquire` raises `StoreError` naming the holder (pid, host, start, command) when
    another job has it; `release` removes the lock file. Not available on Windows,
    where `acquire` does nothing.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock_path = path.with_name(path.name + ".lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock, or raise `StoreError` saying who holds it."""
        if sys.platform == "win32" or self._fd is not None:
            return
        while True:
            try:
                fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                reason = _reason(self.lock_path, exc)
                raise StoreError(
                    f"cannot create the lock file {self.lock_path}: {reason}; "
                    f"the folder of {self.path} must be writable, or choose another path"
                ) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise StoreError(
                    f"{self.path} is in use by another batch job ({self._holder()}); "
                    "let it finish or stop it, then run again"
                ) from None
            except OSError as exc:  # a file system without locks: go on, unguarded
                logger.warning(
                    "cannot lock %s (%s): nothing stops a second job from writing it too",
                    self.lock_path,
                    exc.strerror or exc,
                )
                os.close(fd)
                return
            if _same_file(fd, self.lock_path):
                break
            os.close(fd)  # its holder removed it between our open and flock: take the new one
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
            "command": _command_line(),
        }
        self._fd = fd
        with contextlib.suppress(OSError):  # who holds it is for messages only
            os.ftruncate(fd, 0)
            os.write(fd, (json.dumps(holder) + "\n").encode())

    def release(self) -> None:
        """Let go of the lock and remove its file; safe to call twice."""
        if self._fd is None:
            return
        with contextlib.suppress(OSError):  # removed while held: a later job makes a new one
            self.lock_path.unlink()
        os.close(self._fd)
        self._fd = None

    def _holder(self) -> str:
        """Who holds the lock, from its file; the holder writes it just after taking it."""
        deadline = time.monotonic() + HOLDER_WAIT
        while True:
            try:
                holder = json.loads(self.lock_path.read_bytes())
            except (OSError, ValueError):
                holder = None
            if isinstance(holder, dict) and {"pid", "host", "started"} <= holder.keys():
                command = str(holder.get("command") or "")
                shown = command if len(command) <= 200 else command[:197] + "..."
                return f"pid {holder['pid']} on {holder['host']}, started {holder['started']}" + (
                    f": {shown}" if shown else ""
                )
            if time.monotonic() >= deadline:
                return f"its lock {self.lock_path} is held"
            time.sleep(0.02)


def _same_file(fd: int, path: Path) -> bool:
    try:
        named = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (held.st_dev, held.st_ino) == (named.st_dev, named.st_ino)


def _command_line() -> str:
    """This process's command line, for the lock file; a password in a URL is masked."""
    argv = [_USERINFO.sub(r"\1***@", arg) for arg in sys.argv] or [sys.executable]
    if Path(argv[0]).name == "__main__.py":  # `python -m package`
        return " ".join([f"python -m {Path(argv[0]).parent.name}", *map(shlex.quote, argv[1:])])
    return shlex.join(argv)


_USERINFO: Final = re.compile(r"(\w+://)[^/@\s]+@")


def _reason(path: Path, exc: OSError) -> str:
    """Why `path` cannot be written, in words: names a parent that is a file, not a folder."""
    if isinstance(exc, (NotADirectoryError, FileExistsError)):
        for parent in path.parents:
            if parent.exists() and not parent.is_dir():
                return f"{parent} is a file, not a folder"
    return str(exc.strerror or exc)


@contextlib.contextmanager
def _writing(path: Path, then: str | None = None) -> Iterator[None]:
    """Turn an `OSError` on `path` into a `StoreError` that names it and says what to do."""
    try:
        yield
    except OSError as exc:
        if then is None:
            then = "choose another path" + (
                " or fix its permissions" if isinstance(exc, PermissionError) else ""
            )
        raise StoreError(f"cannot write {path}: {_reason(path, exc)}; {then}") from None


def check_writable(path: Path) -> None:
    """Raise `StoreError` now if `path` cannot be written (a new file is made, then removed).

    For a file written only when the job ends (`--summary-json`): better to know before
    the first request than after the last.
    """
    existed = path.exists()
    with _writing(path), path.open("a", encoding="utf-8"):
        pass
    if not existed:
        with contextlib.suppress(OSError):
            path.unlink()


class Store:
    """The output and failures files of one job, held (locked) and open for appending.

    `done` maps every id already in either file to whether it holds a record (True) or
    a failure (False): ids only, however large the files. `restart` empties both files;
    `retry_failures` only the failures file, so those documents run again. A file that
    cannot be written, or that another job holds, is a `StoreError` before anything runs.
    """

    def __init__(
        self, output: Path, failures: Path, *, restart: bool = False, retry_failures: bool = False
    ) -> None:
        if output.resolve() == failures.resolve():
            raise StoreError(f"the output and failures files are the same file: {output}")
        for path in (output, failures):
            if path.is_dir():
                raise StoreError(f"{path} is a folder; name a file for the JSON lines")
            with _writing(path):
                path.parent.mkdir(parents=True, exist_ok=True)
        self.output = output
        self.failures = failures
        self.done: dict[Any, bool] = {}
        self.repaired: dict[str, int] = {}
        self.repeated: dict[str, int] = {}
        self._fds: dict[bool, int] = {}
        self._dirty = False
        self._synced = time.monotonic()
        self._locks = (OutputLock(output), OutputLock(failures))
        try:
            for lock in self._locks:  # before reading: another job may be writing them
                lock.acquire()
            self._open(restart=restart, retry_failures=retry_failures)
        except BaseException:
            self.close()
            raise

    def _open(self, *, restart: bool, retry_failures: bool) -> None:
        output, failures = self.output, self.failures
        if restart or retry_failures:  # retry: the failed documents are pending again
            for path in (output, failures) if restart else (failures,):
                with _writing(path):
                    path.unlink(missing_ok=True)
        for path, ok in ((failures, False), (output, True)):  # a record wins over a failure
            with _writing(path):
                found = scan(path)
            if found.repaired_bytes:
                self.repaired[str(path)] = found.repaired_bytes
            if found.repeated:
                self.repeated[str(path)] = found.repeated
                logger.warning(
                    "%s: ignored %d line(s) repeating an id of an earlier line (left by an "
                    "older version or a crash); the first line of each id counts",
                    path,
                    found.repeated,
                )
            self.done.update(dict.fromkeys(found.ids, ok))
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
        for path, ok in ((output, True), (failures, False)):
            with _writing(path):
                self._fds[ok] = os.open(path, flags, 0o644)

    def write(self, line: dict[str, Any], *, ok: bool) -> None:
        """Append one document's line to the output (`ok`) or the failures file."""
        data = (json.dumps(line, ensure_ascii=False) + "\n").encode()
        fd = self._fds[ok]
        view = memoryview(data)
        with _writing(self.output if ok else self.failures, _RESUME_HINT):
            while view:
                written = os.write(fd, view)
                view = view[written:]
        self._dirty = True
        if time.monotonic() - self._synced >= SYNC_INTERVAL:
            self.sync()

    def sync(self) -> None:
        """Push both files to the disk (fsync)."""
        if self._dirty:
            for ok, fd in self._fds.items():
                with _writing(self.output if ok else self.failures, _RESUME_HINT):
                    os.fsync(fd)
            self._dirty = False
        self._synced = time.monotonic()

    def close(self) -> None:
        """Sync and close both files, then let go of them; safe to call twice."""
        try:
            if self._fds:
                try:
                    self.sync()
                finally:
                    for fd in self._fds.values():
                        os.close(fd)
                    self._fds = {}
        finally:
            for lock in reversed(self._locks):
                lock.release()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_RESUME_HINT: Final = "fix that (a full disk?), then run the same job again: it resumes"
