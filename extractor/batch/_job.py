"""`BatchJob`: a batch over files, resumable, paced, with progress and a summary.

The job reads a `Source`, skips every id its `Store` already holds (resume is the
default), runs the rest through a `Window`, and writes each result as it completes:
a record line to the output file, anything else to the failures file. Every document
of the input therefore ends in exactly one of the two, whatever stops the job:

- the input runs out: status `complete`;
- `max_cost` is reached: no new document starts, those in flight finish (`max_cost`);
- `interrupt()` (Ctrl-C): no new document starts; those in flight get `grace` seconds
  to finish, then are abandoned, as they are at once on a second `interrupt()`
  (`interrupted`). Abandoned documents are in neither file, so the next run does them;
- the process is killed: the same, and the next run also cuts off a torn last line.

One job at a time owns the two files (the `Store` locks them): a second job on the same
output or failures file stops before it reads them, with a `StoreError` naming the first.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TextIO

from extractor._errors import APIError
from extractor._result import Prices, Usage
from extractor._rows import result_row
from extractor._schema import compile_schema
from extractor.batch._limiter import Limiter
from extractor.batch._parquet import ParquetStore, is_parquet, written_fingerprint
from extractor.batch._runner import BatchResult, Window, release_pool
from extractor.batch._sources import Document, Source
from extractor.batch._store import Store, StoreError

if TYPE_CHECKING:
    from extractor._client import Client

__all__ = ["BatchJob", "Summary", "failures_path"]

logger = logging.getLogger("extractor.batch")

#: Seconds between two progress lines on a terminal.
PROGRESS_INTERVAL: Final = 0.5
#: Seconds documents in flight get to finish after the first Ctrl-C.
DEFAULT_GRACE: Final = 10.0
#: Documents in a row that fail on the transport (every retry spent) before the job
#: stops: the provider is down or refusing, and going on would fail the whole input.
TRANSPORT_FAILURES_TO_STOP: Final = 20


def failures_path(output: Path) -> Path:
    """Where failures go when not named: `out.jsonl` (or `.parquet`) → `out.failures.jsonl`."""
    suffix = ".jsonl" if is_parquet(output) else (output.suffix or ".jsonl")
    return output.with_name(f"{output.stem}.failures{suffix}")


@dataclass
class Summary:
    """What a job did; `report()` is the `--summary-json` object."""

    output: str
    failures: str
    status: str = "running"
    #: Documents read from the input, and how they were dealt with this run.
    seen: int = 0
    skipped: int = 0
    done: int = 0
    failed: int = 0
    duplicates: int = 0
    #: Of the skipped documents, those the failures file holds from an earlier run.
    failed_before: int = 0
    abandoned: int = 0
    #: Documents in the input, when known, and those the files held at the start (time left).
    total: int | None = None
    already: int = 0
    usage: Usage = field(default_factory=Usage)
    rate_limited: int = 0
    repaired: dict[str, int] = field(default_factory=dict)
    #: Lines of the files that repeat an id of an earlier line (ignored: the first counts).
    repeated: dict[str, int] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    elapsed_s: float = 0.0
    failure_types: dict[str, int] = field(default_factory=dict)

    @property
    def per_second(self) -> float:
        """Documents finished (done or failed) per second of this run."""
        elapsed = self.elapsed_s or (time.monotonic() - self.started)
        return (self.done + self.failed) / elapsed if elapsed > 0 else 0.0

    def report(self) -> dict[str, Any]:
        """The summary as plain JSON data."""
        usage = self.usage
        return {
            "status": self.status,
            "output": self.output,
            "failures": self.failures,
            "documents": {
                "seen": self.seen,
                "done": self.done,
                "failed": self.failed,
                "skipped": self.skipped,
                "failed_before": self.failed_before,
                "duplicates": self.duplicates,
                "abandoned": self.abandoned,
            },
            "failure_types": dict(sorted(self.failure_types.items())),
            "elapsed_s": round(self.elapsed_s, 3),
            "per_second": round(self.per_second, 2),
            "tokens": {
                "prompt": usage.prompt_tokens,
                "completion": usage.completion_tokens,
                "total": usage.total_tokens,
            },
            "cost": usage.cost,
            "cached_answers": usage.cached,
            "rate_limited": self.rate_limited,
            "repaired_bytes": self.repaired,
            "repeated_lines": self.repeated,
        }

    def text(self) -> str:
        """The summary a person reads at the end."""
        status = {
            "max_cost": "stopped at --max-cost",
            "provider_failing": "stopped: the provider keeps failing",
        }.get(self.status, self.status)
        lines = [
            f"{status}: {self.done:,} extracted, {self.failed:,} failed"
            + (f", {self.abandoned:,} abandoned (they run next time)" if self.abandoned else "")
            + f" in {_duration(self.elapsed_s)} ({_rate(self.per_second)})",
        ]
        if self.skipped:
            earlier = f", {self.failed_before:,} of them failures" if self.failed_before else ""
            lines.append(f"skipped {self.skipped:,} already in the output files{earlier}")
        if self.duplicates:
            lines.append(f"skipped {self.duplicates:,} repeated ids (the first one counts)")
        if self.failure_types:
            kinds = ", ".join(f"{k} {v:,}" for k, v in sorted(self.failure_types.items()))
            lines.append(f"failures by type: {kinds}")
        cost = "" if self.usage.cost is None else f", cost ${self.usage.cost:,.4f}"
        cached = f"; {self.usage.cached:,} answer(s) from the cache" if self.usage.cached else ""
        lines.append(f"tokens {self.usage.total_tokens:,}{cost}{cached}")
        if self.rate_limited:
            lines.append(f"rate limited {self.rate_limited:,} times (429); slowed down")
        for path, size in self.repaired.items():
            lines.append(f"cut off a torn last line of {path} ({size} bytes)")
        for path, count in self.repeated.items():
            lines.append(f"ignored {count:,} line(s) of {path} repeating an earlier id")
        lines.append(f"records: {self.output}")
        if self.failed or self.failed_before:
            lines.append(f"failures: {self.failures}")
        return "\n".join(lines)

    def progress(self) -> str:
        """One line: done, failed, rate, tokens, cost, time left."""
        finished = self.done + self.failed
        parts = [f"{finished:,}" + (f" of {self.remaining_total:,}" if self.total else "")]
        parts.append(f"{self.failed:,} failed")
        rate = self.per_second
        parts.append(_rate(rate))
        parts.append(f"{_tokens(self.usage.total_tokens)} tokens")
        if self.usage.cost is not None:
            parts.append(f"${self.usage.cost:,.4f}")
        if self.total and rate > 0:
            left = max(self.remaining_total - finished, 0) / rate
            parts.append(f"{_duration(left)} left")
        return " · ".join(parts)

    @property
    def remaining_total(self) -> int:
        """Documents this run has to do: the input less what earlier runs did."""
        return max((self.total or 0) - self.already - self.duplicates, 0)


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _rate(per_second: float) -> str:
    if 0 < per_second < 1:
        return f"{1 / per_second:,.1f} s each"
    return f"{per_second:,.1f}/s"


def _tokens(count: int) -> str:
    if count >= 1_000_000:
        return f"{count / 1e6:.2f}M"
    if count >= 10_000:
        return f"{count / 1e3:.0f}k"
    return f"{count:,}"


class BatchJob:
    """Extract every document of `source` into `output` (records) and `failures`.

    `progress` is a stream for a live progress line (pass `sys.stderr` when it is a
    terminal), None for none. `options` are those of `Client.extract`.
    """

    def __init__(
        self,
        client: Client,
        target: Any,
        source: Source,
        output: Path,
        failures: Path | None = None,
        *,
        concurrency: int = 16,
        rpm: float | None = None,
        tpm: float | None = None,
        max_cost: float | None = None,
        restart: bool = False,
        retry_failures: bool = False,
        options: Mapping[str, Any] | None = None,
        progress: TextIO | None = None,
        grace: float = DEFAULT_GRACE,
        schema_changed_ok: bool = False,
        prices: Prices | None = None,
        describe: Callable[[], str] | None = None,
    ) -> None:
        self.client = client
        self.target = target
        self.source = source
        self.output = output
        self.failures = failures or failures_path(output)
        self.concurrency = concurrency
        self.limiter = Limiter(concurrency, rpm=rpm, tpm=tpm)
        self.max_cost = max_cost
        self.restart = restart
        self.retry_failures = retry_failures
        self.options = dict(options or {})
        self.progress = progress
        self.grace = grace
        #: Go on when OUT was written under another schema (its lines keep theirs).
        self.schema_changed_ok = schema_changed_ok
        #: The cost of a document whose provider reports none, from its tokens.
        self.prices = prices
        #: A line on what the backend is doing (the batch API's rounds), for progress.
        self.describe = describe
        self.summary = Summary(str(output), str(self.failures))
        compiled = compile_schema(target)
        self._dump = compiled.dump
        #: Written on every line, so `extractor validate` and a resumed job can tell which
        #: schema a line was written under.
        self.fingerprint = compiled.fingerprint
        self._window: Window | None = None
        self._interrupts = 0
        self._grace_timer: asyncio.TimerHandle | None = None
        self._transport_failures = 0
        self._no_cost_warned = False

    def run(self) -> Summary:
        """Run the job to its end on a new event loop; Ctrl-C and SIGTERM stop it cleanly."""
        return asyncio.run(self.arun(handle_signals=True))

    async def arun(self, *, handle_signals: bool = False) -> Summary:
        """Run the job on the running loop; see the module doc for how it ends."""
        self.client.check(self.target, **self.options)
        store: Store | ParquetStore
        if is_parquet(self.output):
            store = ParquetStore(
                self.output,
                self.failures,
                self.target,
                restart=self.restart,
                retry_failures=self.retry_failures,
            )
        else:
            store = Store(
                self.output, self.failures, restart=self.restart, retry_failures=self.retry_failures
            )
        if not self.schema_changed_ok:
            try:
                _check_schema(self.output, self.fingerprint)
            except BaseException:
                store.close()
                raise
        self.summary.repaired = dict(store.repaired)
        self.summary.repeated = dict(store.repeated)
        self.summary.already = len(store.done)
        loop = asyncio.get_running_loop()
        window = Window(
            self.client,
            self.target,
            self._pending(store),
            concurrency=self.concurrency,
            limiter=self.limiter,
            options=self.options,
            blocking=self.source.blocking,
        )
        self._window = window
        ticker = asyncio.ensure_future(self._tick()) if self.progress else None
        with store, self._signals(loop, handle_signals):
            try:
                async for result in window.results():
                    self._write(store, result)
                self.summary.abandoned += window.dropped
                if not window.dropped and (
                    self.summary.status == "running"
                    or (self.summary.status == "max_cost" and window.exhausted)
                ):
                    self.summary.status = "complete"
            finally:
                if self._grace_timer is not None:
                    self._grace_timer.cancel()
                if ticker is not None:
                    ticker.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await ticker
                await release_pool(self.client)
                self.summary.elapsed_s = time.monotonic() - self.summary.started
                self.summary.rate_limited = self.limiter.rate_limited
                if self.progress is not None:
                    self.progress.write("\r\x1b[K")
                    self.progress.flush()
        return self.summary

    def interrupt(self) -> None:
        """Stop starting documents; those in flight get `grace` seconds (a second call: none)."""
        window = self._window
        if window is None:
            return
        self._interrupts += 1
        self.summary.status = "interrupted"
        if self._interrupts == 1 and window.in_flight:
            window.stop()
            self._say(
                f"stopping: finishing {window.in_flight} document(s) in flight "
                f"(up to {self.grace:g} s; Ctrl-C again to leave them for the next run)"
            )
            self._grace_timer = asyncio.get_running_loop().call_later(self.grace, self._abandon)
        else:
            self._abandon()

    def _abandon(self) -> None:
        if self._window is not None:
            self.summary.abandoned += self._window.abandon()

    def _say(self, message: str) -> None:
        stream = self.progress or sys.stderr
        stream.write(f"\r\x1b[K{message}\n" if self.progress else f"{message}\n")
        stream.flush()

    @contextlib.contextmanager
    def _signals(self, loop: asyncio.AbstractEventLoop, enabled: bool) -> Iterator[None]:
        if not enabled or threading.current_thread() is not threading.main_thread():
            yield
            return
        installed = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, self.interrupt)
                installed.append(sig)
        try:
            yield
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)

    def _pending(self, store: Store | ParquetStore) -> Iterator[Document]:
        """The input less what the files hold and repeated ids; counts as it goes."""
        done = store.done
        seen: set[Any] = set()
        summary = self.summary
        for document in self.source:
            summary.seen += 1
            doc_id = document.id
            previous = done.get(doc_id)
            if previous is not None:
                summary.skipped += 1
                summary.failed_before += not previous
                continue
            if doc_id in seen:
                summary.duplicates += 1
                logger.info(
                    "%s: id %r appears again; only its first document runs",
                    self.source.name,
                    doc_id,
                )
                continue
            seen.add(doc_id)
            yield document

    def _write(self, store: Store | ParquetStore, result: BatchResult[Any]) -> None:
        summary = self.summary
        usage = result.usage if self.prices is None else self.prices.fill(result.usage)
        summary.usage = summary.usage + usage
        line = result_row(result, fingerprint=self.fingerprint, dump=self._dump, usage=usage)
        store.write(line, ok=result.extraction is not None)
        if result.extraction is not None:
            summary.done += 1
        else:
            kind = type(result.error).__name__
            summary.failed += 1
            summary.failure_types[kind] = summary.failure_types.get(kind, 0) + 1
        self._check_transport(result.error)
        self._check_cost(usage)

    def _check_transport(self, error: BaseException | None) -> None:
        if not isinstance(error, APIError):
            self._transport_failures = 0
            return
        self._transport_failures += 1
        if self._transport_failures == TRANSPORT_FAILURES_TO_STOP and self._window is not None:
            self.summary.status = "provider_failing"
            self._window.stop()
            self._say(
                f"stopping: {TRANSPORT_FAILURES_TO_STOP} documents in a row failed on the "
                f"transport (last: {error}); fix the cause, then rerun with --retry-failures"
            )

    def _check_cost(self, usage: Usage) -> None:
        if self.max_cost is None:
            return
        if usage.total_tokens and usage.cost is None and not self._no_cost_warned:
            self._no_cost_warned = True
            logger.warning("the provider reports no cost: --max-cost cannot stop this job")
        cost = self.summary.usage.cost
        if cost is not None and cost >= self.max_cost and self.summary.status == "running":
            self.summary.status = "max_cost"
            assert self._window is not None
            self._window.stop()
            self._say(
                f"stopping: the cost reached ${cost:,.4f} (--max-cost {self.max_cost:g}); "
                f"finishing {self._window.in_flight} document(s) in flight"
            )

    def cap_reached(self, why: str) -> None:
        """Stop at --max-cost for a reason found elsewhere (the batch API's estimate)."""
        if self.summary.status != "running" or self._window is None:
            return
        self.summary.status = "max_cost"
        self._window.stop()
        self._say(f"stopping: {why} (--max-cost {self.max_cost:g}); a rerun goes on")

    async def _tick(self) -> None:
        assert self.progress is not None
        counting = asyncio.ensure_future(asyncio.to_thread(self.source.count))
        try:
            while True:
                if counting.done() and not counting.cancelled() and counting.exception() is None:
                    self.summary.total = counting.result()
                line = self.summary.progress()
                if self.describe is not None:
                    line += " · " + self.describe()
                self.progress.write("\r\x1b[K" + line)
                self.progress.flush()
                await asyncio.sleep(PROGRESS_INTERVAL)
        finally:
            counting.cancel()


def _check_schema(output: Path, fingerprint: str) -> None:
    """Refuse to add to `output` lines of another schema than the ones it holds."""
    if is_parquet(output):
        _check_written(output, written_fingerprint(output), fingerprint)
        return
    try:
        with output.open("rb") as lines:
            first = lines.readline()
    except OSError:
        return  # no output yet
    try:
        written = json.loads(first).get("schema") if first.strip() else None
    except (ValueError, AttributeError):
        return  # a torn first line: the store has dealt with it
    _check_written(output, written if isinstance(written, str) else None, fingerprint)


def _check_written(output: Path, written: str | None, fingerprint: str) -> None:
    if written is not None and written != fingerprint:
        raise StoreError(
            f"{output} was written under another schema (fingerprint {written}; this one is "
            f"{fingerprint}): rerun with --restart to start over, or --schema-changed keep to "
            "go on (each line keeps the fingerprint it was written under); "
            f"`extractor validate SCHEMA {output}` shows which records no longer fit"
        )
