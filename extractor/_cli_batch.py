"""`extractor batch`: the command-line face of `BatchJob` (options are defined in cli.py).

Exit status: 0 every document of the input has a record; 1 some are in the failures
file (from this run or an earlier one); 2 a usage or configuration error; 3 stopped
by `--max-cost`; 130 interrupted. The summary goes to stderr, and to `--summary-json`.

Every file the job writes is checked before the first request: OUT and the failures
file are opened (and locked: a second job on them exits 2 naming the first), and the
`--summary-json` path is tried, so an unwritable path costs nothing but a one-line error.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from extractor._client import Client
from extractor._errors import UsageError
from extractor._exits import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_MAX_COST, EXIT_OK
from extractor._params import check_params
from extractor._result import Prices
from extractor._retry import RetryPolicy
from extractor.batch._api import MAX_LINES, BatchAPIBackend, inspect, shape_of
from extractor.batch._job import BatchJob, failures_path
from extractor.batch._sources import SourceError, open_source
from extractor.batch._store import StoreError, check_writable

__all__ = ["run"]


def _state_path(output: Path) -> Path:
    return output.with_name(output.name + ".batch-api.sqlite")


def _inspect(args: argparse.Namespace, target: Any, output: Path, *, cancel: bool) -> int:
    """`--status` / `--cancel`: the job's batches, one line each; nothing else runs."""
    import asyncio

    state = _state_path(output)
    if not state.exists():
        raise UsageError(f"no batch-API job writes {output} (no {state})")
    client = Client(args.model, base_url=args.base_url)
    try:
        endpoint = client.prepare(target, "").endpoint
        rows = asyncio.run(inspect(state, endpoint, cancel=cancel))
    finally:
        client.close()
    for row in rows:
        print(
            f"{row['part']}: {row['lines']} lines, {row['answered']} answered, "
            f"batch {row['batch'] or '(not created)'}: {row['provider'] or row['job']}"
        )
    if not rows:
        print("no batch submitted yet")
    return EXIT_OK


def _batch_backend(
    output: Path, *, restart: bool, prices: Prices | None, max_cost: float | None
) -> BatchAPIBackend:
    """The batch-API backend of a job writing `output`, its state beside it."""
    state = _state_path(output)
    folder = output.with_name(output.name + ".batch-api")
    if restart:
        for path in (
            state,
            state.with_name(state.name + "-wal"),
            state.with_name(state.name + "-shm"),
        ):
            path.unlink(missing_ok=True)
        if folder.is_dir():
            shutil.rmtree(folder)
    if max_cost is not None and prices is None:
        raise UsageError(
            "--max-cost with --via batch-api needs --prices IN,OUT (USD per million prompt "
            "and completion tokens, at the provider's batch price): batch results report "
            "tokens, not cost"
        )
    return BatchAPIBackend(state, folder, prices=prices, max_cost=max_cost)


def run(args: argparse.Namespace, target: Any) -> int:
    """Run `extractor batch` with parsed `args` for `target`; return the exit status."""
    output = Path(args.output)
    failures = Path(args.failures) if args.failures else failures_path(output)
    summary_json = Path(args.summary_json) if args.summary_json else None
    params = check_params(dict(args.param))
    via_batch = args.via == "batch-api"
    concurrency = args.concurrency or (MAX_LINES if via_batch else 16)
    if (args.status or args.cancel or args.reask != "batch") and not via_batch:
        raise UsageError("--status, --cancel and --reask go with --via batch-api")
    if via_batch and (args.status or args.cancel):
        return _inspect(args, target, output, cancel=args.cancel)
    backend = (
        _batch_backend(output, restart=args.restart, prices=args.prices, max_cost=args.max_cost)
        if via_batch
        else None
    )
    if backend is not None and args.reask == "online":
        from extractor._http import HTTPBackend, Pools

        backend.online = HTTPBackend(Pools(timeout=args.timeout))
    client = Client(
        args.model,
        base_url=args.base_url,
        mode=args.mode,
        max_retries=args.max_retries,
        timeout=args.timeout,
        # a batch answers within its window (24 h): no deadline, and a failed line is
        # sent again in the next batch at once (the batch itself is the wait)
        deadline=None if via_batch else args.deadline,
        retry=RetryPolicy(initial=0.0, jitter=0.0, max_elapsed=None) if via_batch else None,
        max_connections=min(concurrency, 1000),
        backend=backend,
        cache=args.cache,
        **params,
    )
    try:
        if summary_json is not None:
            check_writable(summary_json)  # before the job, not after it
        endpoint = client.prepare(target, "").endpoint
        if via_batch:
            shape_of(endpoint)  # a provider without a batch API is told so, before anything
        client.check(target)  # before reading any input: stdin may be a terminal
        source = open_source(
            args.input,
            id_field=args.id_field,
            text_field=args.text_field,
            path_field=args.path_field,
        )
        job = BatchJob(
            client,
            target,
            source,
            output,
            failures,
            concurrency=concurrency,
            rpm=args.rpm,
            tpm=args.tpm,
            max_cost=args.max_cost,
            restart=args.restart,
            retry_failures=args.retry_failures,
            schema_changed_ok=args.schema_changed == "keep",
            progress=sys.stderr if sys.stderr.isatty() else None,
            prices=args.prices,
            describe=None if backend is None else backend.describe,
        )
        if backend is not None:
            backend.on_cap = job.cap_reached
        summary = job.run()
    except (SourceError, StoreError) as exc:
        raise UsageError(str(exc)) from None
    finally:
        client.close()
        if backend is not None:
            backend.close()
    print(summary.text(), file=sys.stderr)
    if backend is not None:
        print(f"{backend.describe()}; state in {_state_path(output)}", file=sys.stderr)
    if summary_json is not None:
        report = summary.report()
        if backend is not None:
            report["batch_api"] = backend.report()
        try:
            summary_json.write_text(json.dumps(report, indent=2) + "\n")
        except OSError as exc:
            raise UsageError(
                f"cannot write the summary to {summary_json}: {exc.strerror or exc} "
                "(the job itself is done; the summary above is the same)"
            ) from None
    if summary.status == "interrupted":
        return EXIT_INTERRUPTED
    if summary.status == "max_cost":
        return EXIT_MAX_COST
    return EXIT_FAILED if summary.failed or summary.failed_before else EXIT_OK
