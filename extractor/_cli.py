"""The `extractor` command: extract records from text files, run a batch job, print a schema.

    extractor extract schemas/receipt.py:Receipt samples/receipts/*.txt --model openai/gpt-4o-mini
    extractor batch schemas/receipt.py:Receipt samples/receipts -o receipts.jsonl
    extractor schema schemas.invoice:Invoice --dialect openai-strict

Exit status: 0 all good; 1 some file gave no record, or the schema cannot be expressed
(`SchemaError`); 2 a usage or configuration error (bad flag, unloadable SCHEMA, missing
file, unknown parameter, no model or key, an output that cannot be written, a batch
output another job holds); 3 a batch stopped by --max-cost; 130 interrupted. Every error
is one line on stderr; none prints a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib
import importlib.util
import json
import logging
import os
import re
import sys
import typing
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any, Final

import pydantic

from extractor import __version__
from extractor._client import DEFAULT_DEADLINE, DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT, Client
from extractor._errors import (
    ConfigurationError,
    ExtractorError,
    InputError,
    InvalidAnswer,
    SchemaError,
    UsageError,
    json_kind,
    with_article,
)
from extractor._exits import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
from extractor._params import PARAMETERS, check_params
from extractor._providers import DEFAULT_MODEL, MODEL_ENV, MODES, PROVIDERS
from extractor._result import Prices
from extractor._schema import DIALECTS, compile_schema

__all__ = ["UsageError", "build_parser", "load_target", "main"]


logger = logging.getLogger("extractor.cli")

_KEY_ENVS: Final = ", ".join(p.key_env for p in PROVIDERS.values() if p.key_env)
_SCHEMA_HELP: Final = "path/to/file.py:Class, package.module:Class, or a .json JSON Schema file"
_SCHEMA_MUST: Final = (
    "SCHEMA must name a model class (a Pydantic BaseModel), a type such as list[Model], "
    "or a JSON Schema (a dict, or a .json file)"
)
_RETRIES_HELP: Final = "re-asks after an invalid answer (default: %(default)s)"
_PARAM_HELP: Final = (
    "a request parameter, repeatable; VALUE is JSON when it parses (temperature=0, "
    f"stop='[\"\\n\"]'), else text. NAME is one of: {', '.join(PARAMETERS)}"
)
_MAIN_EPILOG: Final = """\
example:
  extractor extract schemas/contact.py:Contact samples/contacts/ann.txt --model openai/gpt-4o-mini
  extractor batch schemas/receipt.py:Receipt samples/receipts -o receipts.jsonl
  extractor schema schemas.invoice:Invoice --dialect openai-strict

Run `extractor COMMAND --help` for the options of each command."""
_EXTRACT_EPILOG: Final = f"""\
example:
  extractor extract schemas/receipt.py:Receipt samples/receipts/*.txt --model openai/gpt-4o-mini
  extractor extract schemas.contact:Contact - --model mistral/mistral-small-latest < mail.txt
  extractor extract shape.json notes.txt --model ollama/llama3.1 --param temperature=0

output: one JSON line per FILE, in order
  {{"file": "a.txt", "record": {{...}}}}
  {{"file": "b.txt", "record": null, "error": {{"type": "RetriesExhausted", "message": "..."}}}}

API keys come from the environment only, never from a flag (a key in argv leaks into
shell history and `ps`):
  {_KEY_ENVS}
Local servers (ollama, vllm, llamacpp) and loopback URLs need none.

exit status: 0 every file gave a record; 1 some file did not; 2 usage or configuration
error; 130 interrupted."""
_SCHEMA_EPILOG: Final = """\
example:
  extractor schema schemas/receipt.py:Receipt
  extractor schema schemas.invoice:Invoice --dialect openai-strict
  extractor schema shape.json --dialect mistral

exit status: 0 printed; 1 the dialect cannot express the schema (the message names the
field); 2 usage error (bad flag, unloadable SCHEMA)."""

_EVAL_EPILOG: Final = """\
example:
  extractor eval schemas/receipt.py:Receipt gold.jsonl --model openai/gpt-4o-mini -o results.jsonl
  extractor eval schemas.contact:Contact gold.jsonl --model ollama/llama3.1 --limit 20 --json

DATASET: one JSON object a line, {"id": "r1", "text": "...", "gold": {"total": "9.00", ...}};
the gold's top-level keys are the fields scored. Every line is checked before the first
request. Documents are extracted one after another; a failure is scored, not fatal.

matching, per field: strict = equal text after trimming the ends; norm = equal after
upper-casing and removing all whitespace. null (or a field the record lacks) reads as "";
a non-string value reads as its JSON (keys sorted, 1600.0 as 1600). A document with no
record misses every field. overall = all fields of all documents pooled (micro).

--json prints one object (rates are fractions 0..1, null when nothing was counted):
  model, documents, fields {NAME: {n, strict, norm}}, overall {n, strict, norm},
  valid, valid_rate, latency_s {median, p90 (nearest rank)},
  tokens {prompt, completion, total, per_document {prompt, completion, total}},
  cost (null unless the provider reports it), attempts_mean, failures {ERROR_TYPE: count}
valid = documents that gave a schema-valid record; latency (wall clock per extraction),
tokens and attempts count failed documents too.

-o writes one JSON line per document as it finishes:
  {"id", "record" (null on failure), "gold", "match": {NAME: {"strict", "norm"}},
   "latency_s", "error" (null or {"type", "message"}), "attempts"}

exit status: 0 the run completed (whatever the scores); 1 the provider's dialect cannot
express SCHEMA; 2 usage or configuration error, or a bad DATASET line (the message names
it); 130 interrupted (-o keeps the lines of finished documents)."""
_BATCH_EPILOG: Final = """\
example:
  extractor batch schemas/receipt.py:Receipt samples/receipts -o receipts.jsonl
  extractor batch schemas.invoice:Invoice invoices.jsonl -o out.jsonl \\
      --model openrouter/mistralai/mistral-large-2407 --concurrency 64 --rpm 600 --max-cost 5
  cat docs.jsonl | extractor batch schemas.contact:Contact - -o contacts.jsonl

INPUT: a folder (every file under it, recursively; the id is the path relative to it;
symbolic links are not followed, so each file is read once and none outside it),
a JSONL file (one {"id": ..., "text": ...} object a line), a CSV file with a header row
(columns id and text), or - for JSONL on stdin. --id-field/--text-field rename the fields.
A record may name a file instead of giving its text ({"id": ..., "path": "a.pdf"},
relative to the input's folder; --path-field renames it): PDF, DOCX, HTML or text.

OUT gets one JSON line per extracted document, as it finishes:
  {"id", "record", "usage": {prompt_tokens, completion_tokens, total_tokens, cost},
   "attempts", "model", "mode", "elapsed_s", "schema" (its fingerprint)}
and, for a document read in chunks, "chunks", "pages" (field -> pages) and "conflicts";
the failures file one line per document without a record (empty, not UTF-8, invalid
answers after every re-ask, ...):
  {"id", "error": {"type", "message"}, "attempts", "raw" (last answer), "usage", "model",
   "elapsed_s", "schema"}
A resumed job stops if OUT was written under another schema (--schema-changed keep goes
on); `extractor validate SCHEMA OUT` lists the records that no longer fit.

Resume is the default: rerunning skips every id already in either file, so after a
crash, Ctrl-C or kill -9 each document still ends up exactly once in one of them.
--retry-failures runs the documents of the failures file again; --restart starts over.
One job at a time: while a job runs, OUT.lock beside OUT says who holds it, and a second
job on the same OUT stops at once (exit 2) naming the first.
Ctrl-C starts no new document and gives those in flight 10 s (a second Ctrl-C leaves
them for the next run). A 429 slows the whole job: every request waits out the
Retry-After, and concurrency halves, then grows back. After 20 documents in a row fail
on the transport (every retry spent: the provider is down or refusing), the job stops
rather than fail the rest of the input. --max-cost needs a provider that reports cost
(OpenRouter does), or --prices to work it out from the tokens (with --via batch-api, each
batch's cost is estimated before it is submitted, and what would pass the cap waits for a
rerun). OUT ending in .parquet writes a Parquet folder instead (the arrow extra); --cache
answers what an earlier run asked from its file, sending nothing.

Progress goes to stderr when it is a terminal; the summary always does.

exit status: 0 every document has a record; 1 some are in the failures file; 2 usage
or configuration error; 3 stopped by --max-cost (rerun to continue); 130 interrupted
(rerun to continue)."""


class _InputError(Exception):
    """An input file that cannot be used; reported on that file's output line."""


def main(argv: list[str] | None = None) -> int:
    """Run the command line with `argv` (default `sys.argv[1:]`); return the exit status."""
    try:
        try:
            args = build_parser().parse_args(argv)
        except SystemExit as exc:  # --help, --version, or a usage error argparse printed
            return exc.code if isinstance(exc.code, int) else (EXIT_USAGE if exc.code else EXIT_OK)
        with _logging(args.verbose):
            handler: Callable[[argparse.Namespace], int] = args.handler
            return handler(args)
    except (UsageError, ConfigurationError) as exc:
        return _error(str(exc), EXIT_USAGE)
    except SchemaError as exc:
        return _error(str(exc), EXIT_FAILED)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # the reader went away (`| head`): stop without a traceback
        _discard_stdout()
        return EXIT_FAILED


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `extractor` and its subcommands."""
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="extractor",
        description="Typed, validated records out of language models.",
        epilog=_MAIN_EPILOG,
        formatter_class=raw,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _add_verbose(parser, default=False)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    extract = commands.add_parser(
        "extract",
        help="extract one record per FILE, printed as JSON lines",
        description="Extract one record of SCHEMA from each FILE; print one JSON line per FILE.",
        epilog=_EXTRACT_EPILOG,
        formatter_class=raw,
    )
    extract.add_argument("schema", metavar="SCHEMA", help=_SCHEMA_HELP)
    extract.add_argument("files", metavar="FILE", nargs="+", help="UTF-8 text; - reads stdin")
    _add_model_options(extract)
    _add_verbose(extract, default=argparse.SUPPRESS)
    extract.set_defaults(handler=_extract)

    schema = commands.add_parser(
        "schema",
        help="print the JSON Schema a provider receives",
        description="Print SCHEMA compiled to one dialect's JSON Schema.",
        epilog=_SCHEMA_EPILOG,
        formatter_class=raw,
    )
    schema.add_argument("schema", metavar="SCHEMA", help=_SCHEMA_HELP)
    schema.add_argument("--dialect", choices=DIALECTS, default="plain", help="default: plain")
    schema.add_argument(
        "--check",
        action="store_true",
        help="say, for every dialect, whether it carries SCHEMA and what it leaves out",
    )
    _add_verbose(schema, default=argparse.SUPPRESS)
    schema.set_defaults(handler=_schema)

    evaluate = commands.add_parser(
        "eval",
        help="score extractions against a JSON-lines dataset of expected records",
        description="Extract every DATASET document with SCHEMA; print exact-match rates.",
        epilog=_EVAL_EPILOG,
        formatter_class=raw,
    )
    evaluate.add_argument("schema", metavar="SCHEMA", help=_SCHEMA_HELP)
    evaluate.add_argument("dataset", metavar="DATASET", help='JSON lines: {"id", "text", "gold"}')
    _add_model_options(evaluate)
    add = evaluate.add_argument
    add("-o", "--output", metavar="PATH", help="write one JSON line per document to PATH")
    add("--limit", type=int, metavar="N", help="evaluate only the first N documents")
    add("--json", action="store_true", help="print the figures as one JSON object")
    _add_verbose(evaluate, default=argparse.SUPPRESS)
    evaluate.set_defaults(handler=_eval)
    _add_batch(commands)
    return parser


def _add_batch(commands: Any) -> None:
    """The `batch` command's options; the command itself lives in `extractor._cli_batch`."""
    validate = commands.add_parser(
        "validate",
        help="check stored records against a schema",
        description=(
            'Check every record of a batch output file (JSON lines with a "record", or '
            "Parquet) against SCHEMA; print each one that no longer fits, with the path "
            "and why. "
            "Exit 1 if any does, 0 if all fit."
        ),
    )
    validate.add_argument("schema", metavar="SCHEMA", help=_SCHEMA_HELP)
    validate.add_argument(
        "file", metavar="FILE", help="a batch output: JSON lines, or a Parquet file or folder"
    )
    _add_verbose(validate, default=argparse.SUPPRESS)
    validate.set_defaults(handler=_validate)

    batch = commands.add_parser(
        "batch",
        help="extract every document of a folder, JSONL or CSV into JSON lines; resumable",
        description=(
            "Extract one record of SCHEMA from every document of INPUT into OUT (JSON lines), "
            "concurrently, within rate limits. Rerunning the same command resumes."
        ),
        epilog=_BATCH_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = batch.add_argument
    add("schema", metavar="SCHEMA", help=_SCHEMA_HELP)
    add("input", metavar="INPUT", help="a folder, a .jsonl or .csv file, or - (JSONL)")
    add(
        "-o",
        "--output",
        metavar="OUT.jsonl",
        required=True,
        help="records, one JSON line each; a path ending in .parquet: a Parquet folder "
        "(the arrow extra)",
    )
    add("--failures", metavar="PATH", help="failures (default: OUT.failures.jsonl)")
    add(
        "--concurrency",
        type=_positive_int,
        metavar="N",
        help="documents in flight (default: 16; with --via batch-api, 50000: a batch file)",
    )
    add(
        "--reask",
        choices=("batch", "online"),
        default="batch",
        help="with --via batch-api: re-ask invalid answers in the next batch (default), or "
        "online at once",
    )
    add(
        "--status",
        action="store_true",
        help="with --via batch-api: show the job's batches as the provider sees them; run nothing",
    )
    add(
        "--cancel",
        action="store_true",
        help="with --via batch-api: cancel the job's unfinished batches (a rerun reads what "
        "they answered and sends the rest again); run nothing",
    )
    add(
        "--via",
        choices=("online", "batch-api"),
        default="online",
        help="online requests (default), or the provider's batch API: half the price, "
        "answers within 24 h (OpenAI, Mistral); state kept in OUT.batch-api.sqlite",
    )
    add("--rpm", type=_positive_float, metavar="N", help="at most N requests a minute")
    add("--tpm", type=_positive_float, metavar="N", help="at most N tokens a minute")
    add("--max-cost", type=_positive_float, metavar="USD", help="start no document past this cost")
    add(
        "--prices",
        type=_prices,
        metavar="IN,OUT",
        help="USD per million prompt and completion tokens, for a provider that reports no "
        "cost (OpenAI, Mistral, every batch API: give its batch price); --max-cost then holds",
    )
    add("--id-field", default="id", metavar="F", help="JSONL/CSV id field (default: id)")
    add("--text-field", default="text", metavar="F", help="JSONL/CSV text field (default: text)")
    add(
        "--path-field",
        default="path",
        metavar="F",
        help="JSONL/CSV field naming a file to read instead (default: path)",
    )
    add("--restart", action="store_true", help="delete OUT and the failures file; start over")
    add("--retry-failures", action="store_true", help="delete the failures file; run them again")
    add(
        "--schema-changed",
        choices=("stop", "keep"),
        default="stop",
        help="when OUT was written under another schema: stop (default) or keep going",
    )
    add("--summary-json", metavar="PATH", help="also write the summary as JSON to PATH")
    _add_model_options(batch)
    _add_verbose(batch, default=argparse.SUPPRESS)
    batch.set_defaults(handler=_batch)


def _batch(args: argparse.Namespace) -> int:
    from extractor._cli_batch import run  # only this command needs the batch engine

    return run(args, load_target(args.schema))


def _positive_int(text: str) -> int:
    value = _positive_float(text)
    if value != int(value):
        raise argparse.ArgumentTypeError(f"expected a whole number, not {text!r}")
    return int(value)


def _prices(text: str) -> Prices:
    try:
        return Prices.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, not {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number above 0, not {text!r}")
    return value


def load_target(reference: str) -> Any:
    """Load SCHEMA: `path/to/file.py:Class`, `package.module:Class` or a `.json` file.

    Raises `UsageError` saying what to write when the reference cannot be loaded.
    """
    if reference.endswith(".json"):
        return _load_json_schema(Path(reference))
    where, colon, name = reference.rpartition(":")
    if not colon or re.search(r"[/\\]|\.py$", name):  # no class named (or a drive letter)
        where, name = reference, ""
    if where.endswith(".py") or "/" in where or os.sep in where:
        module = _import_path(Path(where))
    elif where and all(part.isidentifier() for part in where.split(".")):
        module = _import_module(where)
    else:
        raise UsageError(f"cannot read SCHEMA {reference!r}; write {_SCHEMA_HELP}")
    target = getattr(module, name, None) if name else None
    if target is None:
        problem = f"{where} has no {name!r}" if name else f"SCHEMA {reference!r} names no class"
        raise UsageError(f"{problem}; {_suggest(where, module)}")
    if not isinstance(target, (type, Mapping)) and typing.get_origin(target) is None:
        raise UsageError(f"{reference} is {with_article(type(target).__name__)}; {_SCHEMA_MUST}")
    if not isinstance(target, Mapping):
        _check_compiles(reference, target)
    return target


def _check_compiles(reference: str, target: Any) -> None:
    """Refuse, in one line, a target Pydantic cannot build a schema for (a plain class)."""
    try:
        compile_schema(target)  # cached: the command's own compile costs nothing more
    except SchemaError as exc:
        cause = exc.__cause__
        if isinstance(cause, pydantic.PydanticSchemaGenerationError):
            what = (
                "a plain class, not a Pydantic model"
                if isinstance(target, type) and not issubclass(target, pydantic.BaseModel)
                else "a type Pydantic cannot build a schema for (it holds a plain class)"
            )
            raise UsageError(f"{reference} is {what}; {_SCHEMA_MUST}") from None
        if isinstance(cause, pydantic.PydanticUserError):
            first = str(cause).strip().splitlines()[0]
            raise UsageError(f"cannot use {reference} as SCHEMA: {first}") from None
        raise


# --- commands -------------------------------------------------------------------------------


def _extract(args: argparse.Namespace) -> int:
    target = load_target(args.schema)
    for name in args.files:
        if name != "-" and not Path(name).is_file():
            problem = "is a directory" if Path(name).is_dir() else "does not exist"
            raise UsageError(f"input file {name} {problem}")
    params = check_params(dict(args.param))
    dump = compile_schema(target).dump
    failures = 0
    with Client(
        args.model,
        base_url=args.base_url,
        mode=args.mode,
        max_retries=args.max_retries,
        timeout=args.timeout,
        deadline=args.deadline,
        cache=args.cache,
        **params,
    ) as client:
        client.check(target)  # before reading any input: stdin may be a terminal
        for name in args.files:
            line = _extract_file(client, target, name, dump)
            failures += "error" in line
            _emit(json.dumps(line))
    return EXIT_FAILED if failures else EXIT_OK


def _extract_file(
    client: Client, target: Any, name: str, dump: Callable[[Any], Any]
) -> dict[str, Any]:
    try:
        result = client.extract_result(target, _read(name))
    except (ConfigurationError, SchemaError):
        raise  # the same for every file: stop
    except (_InputError, ExtractorError) as exc:
        kind = "InputError" if isinstance(exc, _InputError) else type(exc).__name__
        logger.info("%s: %s: %s", name, kind, exc)
        return {"file": name, "record": None, "error": {"type": kind, "message": str(exc)}}
    how = (
        f"mode {result.mode}, {len(result.attempts)} attempt(s), {result.usage.total_tokens} tokens"
    )
    logger.info("%s: record from %s (%s)", name, result.model, how)
    return {"file": name, "record": dump(result.value)}


def _schema(args: argparse.Namespace) -> int:
    compiled = compile_schema(load_target(args.schema))
    if args.check:
        for name in DIALECTS:
            try:
                dropped = compiled.dropped(name)
            except SchemaError as exc:
                _emit(f"{name}: cannot carry it: {exc}")
                continue
            shown = ", ".join(f"{path}: {keyword}" for path, keyword in dropped[:20])
            more = f" (+{len(dropped) - 20} more)" if len(dropped) > 20 else ""
            _emit(f"{name}: ok" + (f"; leaves out (still checked): {shown}{more}" if shown else ""))
        return EXIT_OK
    _emit(json.dumps(compiled.dialect(args.dialect), indent=2))
    for path, keyword in compiled.dropped(args.dialect):
        print(
            f"extractor: {args.dialect} leaves out {keyword} at {path} (still checked)",
            file=sys.stderr,
        )
    return EXIT_OK


def _validate(args: argparse.Namespace) -> int:
    compiled = compile_schema(load_target(args.schema))
    path = Path(args.file)
    parquet = path.suffix.lower() == ".parquet" or path.is_dir()
    checked = wrong = other = skipped = 0
    for number, line in _stored_rows(path) if parquet else _json_lines(path):
        if line is _NOT_JSON:
            _emit(f"line {number}: not JSON")
            wrong += 1
            continue
        if not isinstance(line, dict) or "record" not in line:
            skipped += 1  # a failure line: nothing to check
            continue
        checked += 1
        if line.get("schema") not in (None, compiled.fingerprint):
            other += 1
        record = line["record"]
        data = {compiled.wrap_key: record} if compiled.wrap_key else record
        try:
            compiled.load(data)
        except InvalidAnswer as exc:
            wrong += 1
            where = line.get("id", f"{'row' if parquet else 'line'} {number}")
            for error in exc.errors:
                _emit(f"{where}: {error.path or '(root)'}: {error.message}")
    print(
        f"extractor: {checked} record(s) checked, {wrong} do not fit {compiled.name}"
        + (f"; {other} were written under another schema" if other else "")
        + (f"; {skipped} line(s) without a record skipped" if skipped else ""),
        file=sys.stderr,
    )
    return EXIT_FAILED if wrong else EXIT_OK


_NOT_JSON: Final = object()


def _json_lines(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, decoded line) of a JSON lines file; `_NOT_JSON` for a broken line."""
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    with handle:
        for number, raw in enumerate(handle, 1):
            if raw.strip():
                try:
                    yield number, json.loads(raw)
                except ValueError:
                    yield number, _NOT_JSON


def _stored_rows(path: Path) -> Iterator[tuple[int, Any]]:
    """(row number, row as a JSON line) of a Parquet file or a batch job's Parquet folder."""
    from extractor.batch._parquet import read_rows  # pyarrow: only for Parquet
    from extractor.batch._store import StoreError

    if not path.exists():
        raise UsageError(f"cannot read {path}: no such file or folder")
    try:
        yield from enumerate(read_rows(path), 1)
    except StoreError as exc:
        raise UsageError(str(exc)) from None


def _eval(args: argparse.Namespace) -> int:
    import extractor._evaluate as evaluate  # only this command needs it

    target = load_target(args.schema)
    if args.limit is not None and args.limit < 1:
        raise UsageError(f"--limit must be 1 or more, not {args.limit}")
    params = check_params(dict(args.param))
    try:
        examples = evaluate.read_dataset(args.dataset, limit=args.limit)
        client = Client(
            args.model,
            base_url=args.base_url,
            mode=args.mode,
            max_retries=args.max_retries,
            timeout=args.timeout,
            deadline=args.deadline,
            cache=args.cache,
            **params,
        )
        model = client.check(target)
        progress = sys.stderr if sys.stderr.isatty() else None
        with evaluate.results_file(args.output) as results, client:
            summary, _ = evaluate.evaluate_dataset(
                client, target, examples, results=results, progress=progress
            )
    except evaluate.DatasetError as exc:
        raise UsageError(str(exc)) from None
    report = {"model": model, **summary.report()}
    _emit(json.dumps(report, indent=2) if args.json else evaluate.format_table(report))
    return EXIT_OK


# --- helpers --------------------------------------------------------------------------------


def _param(text: str) -> tuple[str, Any]:
    """`NAME=VALUE` → (name, value), the value read as JSON when it parses, else as text."""
    name, equals, raw = text.partition("=")
    name = name.strip()
    if not equals or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, e.g. temperature=0, not {text!r}")
    if name == "api_key":
        raise argparse.ArgumentTypeError(f"API keys come from the environment only: {_KEY_ENVS}")
    try:
        return name, json.loads(raw)
    except ValueError:
        return name, raw


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    """The options that choose the model and shape the requests (extract and eval)."""
    add = parser.add_argument
    add(
        "--model",
        metavar="PROVIDER/MODEL",
        help=f"e.g. openai/gpt-4o (default: ${MODEL_ENV}, else the embedded {DEFAULT_MODEL})",
    )
    add("--base-url", metavar="URL", help="any OpenAI-compatible server, e.g. http://host/v1")
    add("--mode", choices=MODES, default="auto", help="how the schema is sent (default: auto)")
    add("--max-retries", type=int, default=DEFAULT_MAX_RETRIES, metavar="N", help=_RETRIES_HELP)
    add(
        "--timeout",
        type=_positive_float,
        default=DEFAULT_TIMEOUT,
        metavar="S",
        help=f"one request, connect to last byte, in seconds (default: {DEFAULT_TIMEOUT:g})",
    )
    add(
        "--deadline",
        type=_positive_float,
        default=DEFAULT_DEADLINE,
        metavar="S",
        help=f"one document: every attempt and wait, in seconds (default: {DEFAULT_DEADLINE:g})",
    )
    add("--param", type=_param, action="append", default=[], metavar="NAME=VALUE", help=_PARAM_HELP)
    add(
        "--cache",
        metavar="PATH",
        help="keep answers in this SQLite file and answer a request asked before from it: "
        "a rerun sends nothing and costs nothing (several processes may share the file)",
    )


def _add_verbose(parser: argparse.ArgumentParser, default: Any) -> None:
    # on every parser, so `-v` works before or after the command; the subcommands' default
    # is SUPPRESS so they do not overwrite a `-v` given before the command
    parser.add_argument(
        "-v", "--verbose", action="store_true", default=default, help="log progress to stderr"
    )


@contextlib.contextmanager
def _logging(verbose: bool) -> Iterator[None]:
    """Show the library's INFO logs on stderr while the command runs, then take them away."""
    if not verbose:
        yield
        return
    root = logging.getLogger("extractor")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("extractor: %(message)s"))
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def _emit(text: str) -> None:
    """Print `text` to stdout now; one that cannot take it (a full disk) is a `UsageError`."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        raise  # the reader went away: `main` stops quietly
    except OSError as exc:
        _discard_stdout()
        raise UsageError(
            f"cannot write to standard output: {exc.strerror or exc}; "
            "send it to a file or pipe that can take it"
        ) from None


def _discard_stdout() -> None:
    """Point stdout at the null device, so the flush at exit cannot fail with a traceback."""
    with contextlib.suppress(OSError, ValueError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _error(message: str, code: int) -> int:
    print(f"extractor: error: {message}", file=sys.stderr)
    return code


def _read(name: str) -> str:
    """A file's text: PDF, DOCX, HTML, Markdown or UTF-8 text (`extractor.documents`)."""
    from extractor.documents import read

    try:
        data = sys.stdin.buffer.read() if name == "-" else Path(name).read_bytes()
    except OSError as exc:
        raise _InputError(f"cannot read {name}: {exc.strerror or exc}") from None
    try:
        return read(data, name=None if name == "-" else name).text
    except InputError as exc:
        raise _InputError(str(exc)) from None


def _load_json_schema(path: Path) -> Any:
    try:
        schema = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"no such JSON Schema file: {path}") from None
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read the JSON Schema in {path}: {exc}") from None
    if not isinstance(schema, dict):
        raise UsageError(f"{path} holds {json_kind(schema)}, not a JSON Schema object")
    from extractor._drafts import bundle

    try:
        return bundle(schema, path)  # the documents its references name, read from beside it
    except SchemaError as exc:
        raise UsageError(str(exc)) from None


def _import_path(path: Path) -> ModuleType:
    if not path.is_file():
        raise UsageError(f"no such file: {path} (SCHEMA is {_SCHEMA_HELP})")
    resolved = path.resolve()
    digest = hashlib.sha256(str(resolved).encode()).hexdigest()[:12]
    stem = re.sub(r"\W", "_", resolved.stem)
    name = f"_extractor_schema_{stem}_{digest}"  # unique per file, a valid identifier
    spec = importlib.util.spec_from_file_location(name, resolved)
    if spec is None or spec.loader is None:
        raise UsageError(f"cannot import {path}: not a Python source file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # before running it: pydantic resolves annotations through it
    try:
        with _on_sys_path(str(resolved.parent)):  # so it can import its neighbours
            spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise UsageError(f"cannot import {path}: {type(exc).__name__}: {exc}") from exc
    return module


def _import_module(name: str) -> ModuleType:
    try:
        with _on_sys_path(os.getcwd()):  # as `python -m` would; console scripts do not
            return importlib.import_module(name)
    except Exception as exc:
        hint = ""
        if isinstance(exc, ModuleNotFoundError):
            hint = " (run from the directory holding it, set PYTHONPATH, or give the file path)"
        raise UsageError(f"cannot import {name}: {type(exc).__name__}: {exc}{hint}") from exc


@contextlib.contextmanager
def _on_sys_path(directory: str) -> Iterator[None]:
    present = directory in sys.path or (directory == os.getcwd() and "" in sys.path)
    if not present:
        sys.path.insert(0, directory)
    try:
        yield
    finally:
        if not present:
            with contextlib.suppress(ValueError):
                sys.path.remove(directory)


def _suggest(where: str, module: ModuleType) -> str:
    """What to write instead, from the Pydantic models the module (or package) defines."""
    prefix = module.__name__ + "."
    found = [
        key
        for key, value in vars(module).items()
        if isinstance(value, type)
        and issubclass(value, pydantic.BaseModel)
        and (value.__module__ + ".").startswith(prefix)
    ]
    if len(found) == 1:
        return f"write {where}:{found[0]}"
    return f"write {where}:Class" + (f" (models in it: {', '.join(found)})" if found else "")
