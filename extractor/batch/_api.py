"""Provider batch APIs as a `Backend`: the online job's requests, sent as batch files.

`BatchAPIBackend` answers each request of the extraction loop through the provider's
batch API (OpenAI's `/v1/files` + `/v1/batches` and the servers that copy it, or
Mistral's `/v1/files` + `/v1/batch/jobs`), so a batch job runs exactly as online: the
same conversation, the same validation, reasks and mode fallbacks, the same output
lines. Only the transport differs. Requests gather while documents run; when no new one
has come for `linger` seconds (every document in flight is waiting for an answer), or a
file is full (`max_lines`, `max_bytes`), they go out as one batch file. Each answer wakes
the document waiting for it; a reask is a request like any other, in the next round.

Every line is keyed by its body (a hash of the exact bytes, and how many times this run
sent the same body before), and the key, its line id, its batch and its answer are kept
in a SQLite file beside the output. A job killed at any moment and run again asks the
same questions in the same order, finds each one already submitted (waiting for its
batch, or answered) and never submits it again. A batch created but not yet recorded is
found again by the part id in its metadata.

With `max_cost`, each line's cost is estimated before its batch is submitted (its
prompt at `CHARS_PER_TOKEN`, its answer at the job's average so far, or the request's
own token cap) and settled from the usage each answer reports, at `prices`. A line that
would take the job's spent and reserved cost past the cap is not submitted: its
document stops unreported (a rerun with a higher cap goes on), and `on_cap` is told so
that no new document starts. The cap is the job's, across every round and every run of
it: the state file remembers what was spent.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from extractor._context import CHARS_PER_TOKEN
from extractor._errors import APIConnectionError, APIStatusError, ConfigurationError
from extractor._http import HTTPBackend
from extractor._modes import Answer, decode
from extractor._result import Prices
from extractor._transport import acall, adownload

if TYPE_CHECKING:
    import httpx

    from extractor._providers import Endpoint
    from extractor.backend import Backend, Request, StreamItem

__all__ = ["MAX_BYTES", "MAX_LINES", "BatchAPIBackend", "Shape", "inspect", "shape_of"]

logger = logging.getLogger("extractor.batch")

#: One batch file at most: OpenAI's limits (Mistral's are higher).
MAX_LINES: Final = 50_000
MAX_BYTES: Final = 190 * 2**20  # under the 200 MB limit, with room for the multipart framing
#: Seconds between polls of a batch: from the first, growing by half up to the last.
POLL: Final = (2.0, 60.0)
#: Completion tokens assumed for a line before any answer of the job tells better.
GUESS_COMPLETION: Final = 512

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS parts (
    id TEXT PRIMARY KEY, path TEXT NOT NULL, lines INTEGER NOT NULL,
    file_id TEXT, batch_id TEXT, status TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS lines (
    key TEXT PRIMARY KEY, custom_id TEXT UNIQUE NOT NULL, part TEXT,
    status TEXT NOT NULL, result TEXT, estimate REAL
);
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
"""


@dataclass(frozen=True)
class Shape:
    """How one provider's batch API is spoken."""

    name: str
    create_path: str  # POST here makes a batch
    get_path: str  # + the batch id: its status
    model_on_line: bool  # OpenAI: each line's body names the model; Mistral: the job does
    done: frozenset[str]
    failed: frozenset[str]

    def line(self, custom_id: str, body: dict[str, Any]) -> dict[str, Any]:
        if self.model_on_line:
            return {
                "custom_id": custom_id,
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": body,
            }
        return {"custom_id": custom_id, "body": {k: v for k, v in body.items() if k != "model"}}

    def create_body(self, file_id: str, model: str, job: str, part: str) -> dict[str, Any]:
        metadata = {"extractor_job": job, "extractor_part": part}
        if self.model_on_line:
            return {
                "input_file_id": file_id,
                "endpoint": "/v1/chat/completions",
                "completion_window": "24h",
                "metadata": metadata,
            }
        return {
            "input_files": [file_id],
            "model": model,
            "endpoint": "/v1/chat/completions",
            "metadata": metadata,
        }

    def files_of(self, batch: dict[str, Any]) -> tuple[str | None, str | None]:
        if self.model_on_line:
            return batch.get("output_file_id"), batch.get("error_file_id")
        return batch.get("output_file"), batch.get("error_file")


_SHAPES: Final = {
    "openai": Shape(
        "openai",
        "/batches",
        "/batches/",
        True,
        frozenset({"completed", "expired", "cancelled"}),
        frozenset({"failed"}),
    ),
    "mistral": Shape(
        "mistral",
        "/batch/jobs",
        "/batch/jobs/",
        False,
        frozenset({"SUCCESS", "TIMEOUT_EXCEEDED", "CANCELLED"}),
        frozenset({"FAILED"}),
    ),
}


def shape_of(endpoint: Endpoint) -> Shape:
    """The batch API of `endpoint`'s provider; ConfigurationError when it has none."""
    name = endpoint.provider.batch_api
    if name is None:
        raise ConfigurationError(
            f"{endpoint.provider.name} has no batch API; run the online job "
            "(leave out --via batch-api), which paces itself with --rpm and --tpm"
        )
    return _SHAPES[name]


class BatchAPIBackend:
    """Answers requests through the provider's batch API (see the module doc).

    `state` is the SQLite file that makes the job resumable; batch files are written in
    `folder`. Async only: a batch job drives it (`BatchJob`, `aextract_many`).
    """

    def __init__(
        self,
        state: Path,
        folder: Path,
        *,
        max_lines: int = MAX_LINES,
        max_bytes: int = MAX_BYTES,
        linger: float = 1.0,
        poll: tuple[float, float] = POLL,
        timeout: float = 600.0,
        online: Backend | None = None,
        prices: Prices | None = None,
        max_cost: float | None = None,
        on_cap: Callable[[str], None] | None = None,
    ) -> None:
        if max_lines < 1 or max_bytes < 1024:
            raise ConfigurationError("a batch file needs room for one line at least")
        if max_cost is not None and prices is None:
            raise ConfigurationError(
                "a cost cap on the batch API needs the prices (--prices IN,OUT, in USD per "
                "million tokens): batch results report tokens, not cost"
            )
        self.prices = prices
        self.max_cost = max_cost
        #: Told (once) when a line is held back by the cap, so that the job stops starting.
        self.on_cap = on_cap
        self.folder = folder
        self.max_lines = max_lines
        self.max_bytes = max_bytes
        self.linger = linger
        self.poll = poll
        self.timeout = timeout
        #: Where reasks go instead of the next batch (`--reask online`), if anywhere.
        self.online = online
        folder.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(state, isolation_level=None, check_same_thread=False)
        self._db.executescript("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;" + _SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(lines)")}
        if "estimate" not in columns:  # a state file of an earlier version
            self._db.execute("ALTER TABLE lines ADD COLUMN estimate REAL")
        self._seen: dict[str, int] = {}  # body hash → times this run asked it
        # (key, custom_id, line, estimated cost) not sent yet
        self._queue: list[tuple[str, str, bytes, float]] = []
        self._queued_bytes = 0
        self._waiters: dict[str, list[asyncio.Future[dict[str, Any]]]] = {}
        self._arrived: asyncio.Event | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._polled: set[str] = set()  # parts being polled by a task of this run
        self._http: httpx.AsyncClient | None = None
        self._endpoint: Endpoint | None = None
        # this job's identity on the provider's side: a batch is found again by it and
        # its part, never taken for another job's part of the same name
        found = self._db.execute("SELECT v FROM meta WHERE k = 'job'").fetchone()
        if found is None:
            import uuid

            found = (uuid.uuid4().hex,)
            with self._db:
                self._db.execute("INSERT INTO meta (k, v) VALUES ('job', ?)", found)
        self.job: str = str(found[0])
        self._next = self._count("SELECT COUNT(*) FROM lines")
        self._parts = self._count("SELECT COUNT(*) FROM parts")
        #: What this run did, for progress and the summary.
        self.submitted_batches = 0
        self.submitted_lines = 0
        self.answered_lines = 0
        self.failed_lines = 0  # answered with an error (resent within the retry budget)
        self.reasked = 0  # lines that are reasks (a document's second attempt or later)
        self.held = 0  # requests not submitted: they would have passed the cost cap
        #: The job's cost so far (all runs): settled from answers, and estimated for lines
        #: submitted and not answered; worked out when a batch is written.
        self.spent = 0.0
        self.reserved = 0.0
        self._guess: float = GUESS_COMPLETION
        self._estimates: dict[str, float] = {}  # key → estimate, of lines sent by this run
        if max_cost is not None:
            self._ledger()

    # --- the Backend protocol ---------------------------------------------------------------

    def complete(self, request: Request) -> Answer:
        raise ConfigurationError("the batch API answers batch jobs only (async)")

    def stream(self, request: Request) -> Iterator[StreamItem]:
        raise ConfigurationError("a batch API cannot stream; use the online job to stream")

    def astream(self, request: Request) -> AsyncIterator[StreamItem]:
        raise ConfigurationError("a batch API cannot stream; use the online job to stream")

    async def acomplete(self, request: Request) -> Answer:
        if self.online is not None and request.attempt > 1:  # a reask: online, at once
            self.reasked += 1
            return await self.online.acomplete(request)
        self._start(request.endpoint)
        shape = shape_of(request.endpoint)
        body = HTTPBackend.body(request)
        text = json.dumps(body, ensure_ascii=False)  # the bytes the online job would send
        digest = hashlib.sha256(text.encode()).hexdigest()[:32]
        seen = self._seen.get(digest, 0)
        self._seen[digest] = seen + 1
        key = f"{digest}.{seen}"
        row = self._db.execute("SELECT status, result, part FROM lines WHERE key = ?", (key,))
        found = row.fetchone()
        if found is not None and found[0] == "answered":
            return _answer(request.mode, json.loads(found[1]))
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(key, []).append(future)
        if found is None:
            if self.held:  # the cap is reached: nothing more is submitted
                self._waiters.pop(key, None)
                self.held += 1
                raise asyncio.CancelledError
            custom_id = f"r{self._next}"
            self._next += 1
            line = json.dumps(shape.line(custom_id, body), ensure_ascii=False).encode() + b"\n"
            self.reasked += request.attempt > 1
            self._queue.append((key, custom_id, line, self._estimate(len(text), body)))
            self._queued_bytes += len(line)
            assert self._arrived is not None
            self._arrived.set()
        else:
            self._follow(found[2])
        return _answer(request.mode, await future)

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        self._polled.clear()
        self._arrived = None
        if self._http is not None:
            await self._http.aclose()
            self._http = None
        if self.online is not None:
            await self.online.aclose()

    def close(self) -> None:
        """Close the state file (after `aclose`)."""
        self._db.close()

    def describe(self) -> str:
        """One line on this run's rounds, for the progress line and the summary."""
        parts = [
            f"{self.submitted_batches:,} batch(es) submitted, {len(self._polled):,} in flight",
            f"{self.submitted_lines:,} lines sent",
            f"{self.answered_lines:,} answered",
            f"{self.failed_lines:,} failed",
            f"{self.reasked:,} re-asked",
        ]
        if self.max_cost is not None:
            parts.append(f"${self.spent:,.4f} spent + ${self.reserved:,.4f} estimated")
        if self.held:
            parts.append(f"{self.held:,} held back by the cost cap")
        return "batch API: " + ", ".join(parts)

    def report(self) -> dict[str, Any]:
        """The same as data, for `--summary-json`."""
        return {
            "batches_submitted": self.submitted_batches,
            "lines_submitted": self.submitted_lines,
            "lines_answered": self.answered_lines,
            "lines_failed": self.failed_lines,
            "reasked": self.reasked,
            "held_by_cost_cap": self.held,
            "cost_spent": round(self.spent, 6) if self.max_cost is not None else None,
            "cost_estimated_in_flight": round(self.reserved, 6)
            if self.max_cost is not None
            else None,
        }

    # --- rounds -----------------------------------------------------------------------------

    def _start(self, endpoint: Endpoint) -> None:
        """On the first request of this event loop: the flusher, and the unfinished parts."""
        if self._arrived is not None:
            return
        import httpx

        self._endpoint = endpoint
        self._arrived = asyncio.Event()
        self._http = httpx.AsyncClient(timeout=self.timeout)
        self._spawn(self._flusher())
        for (part,) in self._db.execute("SELECT id FROM parts WHERE status != 'done'"):
            self._follow(part)

    def _spawn(self, work: Any) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _follow(self, part: str) -> None:
        if part not in self._polled:
            self._polled.add(part)
            self._spawn(self._run_part(part))

    async def _flusher(self) -> None:
        assert self._arrived is not None
        while True:
            await self._arrived.wait()
            self._arrived.clear()
            while self._queue and not self._full():
                try:  # more may come: every document in flight sends one before it waits
                    await asyncio.wait_for(self._arrived.wait(), self.linger)
                    self._arrived.clear()
                except asyncio.TimeoutError:
                    break
            while self._queue:
                self._write_part()

    def _full(self) -> bool:
        return len(self._queue) >= self.max_lines or self._queued_bytes >= self.max_bytes

    def _write_part(self) -> None:
        """The queued lines (a file's worth), written and recorded before any upload."""
        taken: list[tuple[str, str, bytes, float]] = []
        size = 0
        left = None if self.max_cost is None else self.max_cost - self._ledger()
        while self._queue and len(taken) < self.max_lines:
            line, estimate = self._queue[0][2], self._queue[0][3]
            if taken and size + len(line) > self.max_bytes:
                break
            if left is not None:
                if estimate > left:
                    self._hold(self.max_cost - left)  # type: ignore[operator]
                    break
                left -= estimate
            taken.append(self._queue.pop(0))
            size += len(line)
        self._queued_bytes -= size
        if not taken:
            return
        if self.max_cost is not None:
            self.reserved += sum(estimate for *_, estimate in taken)
            self._estimates.update((key, estimate) for key, _, _, estimate in taken)
        part = f"part-{self._parts:05d}"
        self._parts += 1
        path = self.folder / f"{part}.jsonl"
        with path.open("wb") as out:
            out.writelines(line for _, _, line, _ in taken)
            out.flush()
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute(
                "INSERT INTO parts (id, path, lines, status) VALUES (?, ?, ?, 'written')",
                (part, str(path), len(taken)),
            )
            self._db.executemany(
                "INSERT INTO lines (key, custom_id, part, status, estimate) "
                "VALUES (?, ?, ?, 'sent', ?)",
                [(key, custom_id, part, estimate) for key, custom_id, _, estimate in taken],
            )
        self._follow(part)

    # --- the cost cap -----------------------------------------------------------------------

    def _estimate(self, chars: int, body: dict[str, Any]) -> float:
        """A line's cost before it is sent: its prompt, and its answer as guessed."""
        if self.prices is None:
            return 0.0
        completion = self._guess
        ceiling = body.get("max_completion_tokens") or body.get("max_tokens")
        if isinstance(ceiling, int) and not isinstance(ceiling, bool) and ceiling > 0:
            completion = min(completion, ceiling)
        return self.prices.cost(chars / CHARS_PER_TOKEN, completion)

    def _ledger(self) -> float:
        """The job's cost so far, spent and reserved, from the state file (all runs)."""
        assert self.prices is not None
        usage = "json_extract(result, '$.response.body.usage.{}')"
        prompt, completion, cost = (
            usage.format(k) for k in ("prompt_tokens", "completion_tokens", "cost")
        )
        row = self._db.execute(
            "SELECT "
            "COALESCE(SUM(CASE WHEN status = 'sent' THEN estimate END), 0), "
            f"COALESCE(SUM(CASE WHEN status = 'answered' THEN COALESCE({cost}, "
            f"(COALESCE({prompt}, 0) * ? + COALESCE({completion}, 0) * ?) / 1e6) END), 0), "
            f"AVG(CASE WHEN status = 'answered' THEN {completion} END) "
            "FROM lines",
            (self.prices.prompt, self.prices.completion),
        ).fetchone()
        self.reserved, self.spent = float(row[0]), float(row[1])
        if row[2] is not None:
            self._guess = float(row[2])
        return self.reserved + self.spent

    def _hold(self, committed: float) -> None:
        """The cap is reached: the lines still queued are not sent; their documents stop."""
        held, self._queue, self._queued_bytes = self._queue, [], 0
        self.held += len(held)
        for key, *_ in held:
            for future in self._waiters.pop(key, []):
                future.cancel()
        if self.on_cap is not None:
            self.on_cap(
                f"the batch API's cost, spent and estimated, is ${committed:,.4f}; "
                f"{len(held):,} request(s) held back"
            )

    async def _run_part(self, part: str) -> None:
        """Upload, submit (or find again), poll and read one part, whatever was done before."""
        try:
            await self._run(part)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the part's documents fail with it; nothing is lost
            logger.warning("batch %s failed: %s", part, exc)
            self._settle_all(part, {"error": {"code": "batch_failed", "message": str(exc)}})
        finally:
            self._polled.discard(part)

    async def _run(self, part: str) -> None:
        assert self._endpoint is not None
        assert self._http is not None
        endpoint, http = self._endpoint, self._http
        shape = shape_of(endpoint)
        path, lines, file_id, batch_id, status = self._db.execute(
            "SELECT path, lines, file_id, batch_id, status FROM parts WHERE id = ?", (part,)
        ).fetchone()
        if status == "done":
            return
        if batch_id is None:
            batch_id = await self._find(shape, part)
        if batch_id is None:
            if file_id is None:
                with Path(path).open("rb") as data:
                    uploaded = await acall(
                        http,
                        endpoint,
                        "POST",
                        "/files",
                        files={"file": (Path(path).name, data, "application/jsonl")},
                        data={"purpose": "batch"},
                        timeout=self.timeout,
                    )
                file_id = str(uploaded["id"])
                self._set(part, file_id=file_id, status="uploaded")
            created = await acall(
                http,
                endpoint,
                "POST",
                shape.create_path,
                json_body=shape.create_body(file_id, endpoint.model, self.job, part),
                timeout=self.timeout,
            )
            batch_id = str(created["id"])
            self.submitted_batches += 1
            self.submitted_lines += lines
            logger.info("submitted %s: batch %s, %d requests", part, batch_id, lines)
        self._set(part, batch_id=batch_id, status="submitted")
        wait = self.poll[0]
        while True:
            batch = await acall(
                http, endpoint, "GET", shape.get_path + batch_id, timeout=self.timeout
            )
            state = str(batch.get("status"))
            if state in shape.done or state in shape.failed:
                break
            await asyncio.sleep(wait)
            wait = min(self.poll[1], wait * 1.5)
        output, errors = shape.files_of(batch)
        for file in (output, errors):
            if file:
                await self._read(part, file)
        why = _batch_errors(batch) if state in shape.failed else f"the batch ended {state}"
        self._settle_all(part, {"error": {"code": f"batch_{state.lower()}", "message": why}})
        self._set(part, status="done")

    async def _find(self, shape: Shape, part: str) -> str | None:
        """The batch this part was submitted as, if a killed run created it unrecorded."""
        assert self._endpoint is not None
        assert self._http is not None
        path = shape.create_path + ("?limit=100" if shape.model_on_line else "?page_size=100")
        try:
            listed = await acall(self._http, self._endpoint, "GET", path, timeout=self.timeout)
        except APIStatusError:
            return None  # no list endpoint: this part was never created, or is lost
        for batch in listed.get("data", []) if isinstance(listed, dict) else []:
            metadata = batch.get("metadata") or {}
            if (
                isinstance(metadata, dict)
                and metadata.get("extractor_job") == self.job
                and metadata.get("extractor_part") == part
            ):
                return str(batch["id"])
        return None

    async def _read(self, part: str, file: str) -> None:
        """Download one output or error file and settle each line in it."""
        assert self._endpoint is not None
        assert self._http is not None
        target = self.folder / f"{part}.{file}.jsonl"
        with target.open("wb") as out:
            await adownload(
                self._http, self._endpoint, f"/files/{file}/content", out, timeout=self.timeout
            )
        pending = dict(
            self._db.execute(
                "SELECT custom_id, key FROM lines WHERE part = ? AND status != 'answered'",
                (part,),
            ).fetchall()
        )
        with target.open("rb") as lines:
            for chunk in _chunked(lines, 2000):  # one transaction (one disk flush) a chunk
                settled = []
                for raw in chunk:
                    if not raw.strip():
                        continue
                    try:
                        line = json.loads(raw)
                    except ValueError:
                        logger.warning("%s: a line of %s is not JSON; skipped", part, file)
                        continue
                    custom_id = line.get("custom_id") if isinstance(line, dict) else None
                    key = pending.pop(custom_id, None) if isinstance(custom_id, str) else None
                    if key is not None:
                        settled.append((key, line))
                self._settle_many(settled)
                await asyncio.sleep(0)  # let the documents answered so far go on

    def _settle_many(self, settled: list[tuple[str, dict[str, Any]]]) -> None:
        """Record many lines' answers in one transaction, then wake who waits for them."""
        if not settled:
            return
        with self._db:
            self._db.executemany(
                "UPDATE lines SET status = 'answered', result = ? "
                "WHERE key = ? AND status != 'answered'",
                [(json.dumps(result, ensure_ascii=False), key) for key, result in settled],
            )
        for key, result in settled:
            self._count_answer(key, result)
            for future in self._waiters.pop(key, []):
                if not future.done():
                    future.set_result(result)

    def _settle(self, key: str, result: dict[str, Any]) -> None:
        """Record a line's answer (once) and wake whoever waits for it."""
        with self._db:
            updated = self._db.execute(
                "UPDATE lines SET status = 'answered', result = ? "
                "WHERE key = ? AND status != 'answered'",
                (json.dumps(result, ensure_ascii=False), key),
            ).rowcount
        if not updated:
            return
        self._count_answer(key, result)
        for future in self._waiters.pop(key, []):
            if not future.done():
                future.set_result(result)

    def _count_answer(self, key: str, result: dict[str, Any]) -> None:
        self.answered_lines += 1
        self.reserved = max(0.0, self.reserved - self._estimates.pop(key, 0.0))
        response = result.get("response")
        if not isinstance(response, dict) or response.get("status_code") != 200:
            self.failed_lines += 1
        elif self.prices is not None:
            body = response.get("body")
            usage = body.get("usage") if isinstance(body, dict) else None
            if isinstance(usage, dict):
                reported = usage.get("cost")
                tokens = (usage.get("prompt_tokens"), usage.get("completion_tokens"))
                if isinstance(reported, (int, float)):
                    self.spent += float(reported)
                elif all(isinstance(n, (int, float)) for n in tokens):
                    self.spent += self.prices.cost(*tokens)  # type: ignore[arg-type]

    def _settle_all(self, part: str, result: dict[str, Any]) -> None:
        """Every line of `part` without an answer gets `result` (the batch failed or ended)."""
        rows = self._db.execute(
            "SELECT key FROM lines WHERE part = ? AND status != 'answered'", (part,)
        ).fetchall()
        for (key,) in rows:
            self._settle(key, result)

    def _set(self, part: str, **values: Any) -> None:
        columns = ", ".join(f"{name} = ?" for name in values)
        with self._db:
            self._db.execute(f"UPDATE parts SET {columns} WHERE id = ?", (*values.values(), part))

    def _count(self, query: str) -> int:
        return int(self._db.execute(query).fetchone()[0])


async def inspect(state: Path, endpoint: Endpoint, *, cancel: bool = False) -> list[dict[str, Any]]:
    """The batches of a job (from its state file), as the provider sees them now.

    With `cancel`, each batch not finished is cancelled first: what it answered is
    kept by the provider, and the next run of the job reads it and sends the rest again.
    """
    import httpx

    shape = shape_of(endpoint)
    db = sqlite3.connect(state)
    try:
        parts = db.execute("SELECT id, lines, batch_id, status FROM parts ORDER BY id").fetchall()
        answered = dict(
            db.execute(
                "SELECT part, COUNT(*) FROM lines WHERE status = 'answered' GROUP BY part"
            ).fetchall()
        )
    finally:
        db.close()
    rows = []
    async with httpx.AsyncClient(timeout=60.0) as http:
        for part, lines, batch_id, status in parts:
            row: dict[str, Any] = {
                "part": part,
                "lines": lines,
                "answered": answered.get(part, 0),
                "batch": batch_id,
                "job": status,
                "provider": None,
            }
            if batch_id is not None and status != "done":
                if cancel:
                    cancel_path = shape.get_path + batch_id + "/cancel"
                    await acall(http, endpoint, "POST", cancel_path, timeout=60.0)
                got = await acall(http, endpoint, "GET", shape.get_path + batch_id, timeout=60.0)
                row["provider"] = got.get("status")
            rows.append(row)
    return rows


def _chunked(lines: Any, size: int) -> Iterator[list[bytes]]:
    chunk: list[bytes] = []
    for raw in lines:
        chunk.append(raw)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _answer(mode: str, result: dict[str, Any]) -> Answer:
    """The `Answer` in one output line, or the transport error its line or batch reports."""
    response = result.get("response")
    error = result.get("error")
    if isinstance(response, dict) and response.get("status_code") == 200:
        return decode(mode, response.get("body"))
    if isinstance(response, dict) and isinstance(response.get("status_code"), int):
        body = response.get("body")
        detail = body.get("error") if isinstance(body, dict) else None
        raise APIStatusError.from_error_object(
            detail or json.dumps(body)[:500],
            status=response["status_code"],
            body=json.dumps(body, ensure_ascii=False)[:4000],
            headers={},
            retry_after=None,
        )
    code = error.get("code") if isinstance(error, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    raise APIConnectionError(f"the batch gave no answer ({code}): {message}")


def _batch_errors(batch: dict[str, Any]) -> str:
    errors = batch.get("errors")
    data = errors.get("data") if isinstance(errors, dict) else errors
    if isinstance(data, list) and data:
        return "; ".join(
            str(e.get("message", e)) if isinstance(e, dict) else str(e) for e in data[:3]
        )
    return "the provider failed the batch"
