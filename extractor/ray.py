"""Extraction as a step of a Ray Data pipeline: a `Dataset` of documents in, of results out.

```python
import ray.data
import extractor.ray

docs = ray.data.read_parquet("s3://bucket/docs/")  # columns `id` and `text`
results = extractor.ray.extract(
    docs, Invoice, model="openai/gpt-4o-mini", rpm=3_000, output="s3://bucket/invoices/"
)
results.filter(lambda row: row["_error_type"] is None).count()
```

Each result row has the columns of `_arrow.result_schema(target)`: `id`, the record's
top-level fields typed from the model (a nested model is a struct, a list a list), then
`_error_type`, `_error_message` (null for a record), `_attempts`, `_mode`, `_model`,
`_usage`, `_elapsed_s`, `_schema`, `_raw`, ... . No row is dropped: a bad document, or
anything that goes wrong in a batch, is a row with the error columns set.

How it runs:

- **Actors.** `Extract` is a callable class for `map_batches` over an actor pool
  (`actors`, a size or a `(min, max)` range). Its `__call__` is async: Ray Data runs it on
  one event loop per actor, where the batch runner (`batch._runner.Window`) drives every
  document as `Client.aextract_many` does, and several batches of one actor run at once.
  `concurrency` caps the requests one actor has waiting or in flight. The embedded model
  (no provider configured) is loaded once per actor process, so one runs per actor.
- **One limit for the job.** `rpm` and `tpm` are held by one named actor (`rate_limit`)
  for every worker on every node. Each actor asks it for the instants its waiting
  requests may go, all of them in one call, and books a little ahead at its recent pace
  (`AHEAD_SECONDS`: a call costs a few ms of CPU); the keeper spaces them evenly (no
  burst, so any one second holds at most `rpm / 60` of them, plus the jitter of a late
  wake: a request woken more than `GRACE` late asks again rather than crowd the next,
  and an instant booked ahead that no request takes in time goes unused). A 429
  anywhere pauses every actor: the one that saw it tells the keeper, and every actor
  holds a long poll on it, so the others stop within a round trip; the pause is the
  `Retry-After` (else one that doubles while 429s continue), and each actor halves its
  concurrency once per round of 429s, growing it back as `batch.Limiter` does.
- **Resume.** With `output` (a Parquet folder, local or any `pyarrow.fs` URI) the call
  runs the job to the end and returns the folder read back. Each write task writes one
  part file of at least `rows_per_file` rows under a hidden temporary name and renames it
  into place, so the folder holds only whole files; a run that is killed keeps every file
  it finished, and loses the rows not yet written (they run again). Rerunning over the
  same `output` first reads the `id` column of every part and skips those ids (records
  and failures alike): an anti-join by id, done in the actors before any request. A file
  a crash left unreadable is set aside (renamed `.NAME.torn`) and its ids run again.

API keys never travel in a Ray object: they come from each worker's environment (the
preset's variable, `OPENAI_API_KEY` and so on), and an `api_key` option is refused. A
local cluster's workers inherit the driver's environment; on other nodes, set it there.
"""

from __future__ import annotations

import importlib
import logging
import os
import uuid
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Final

try:
    import ray
    import ray.data
    from ray.data import Datasink
except ImportError as exc:  # pragma: no cover - the extra is missing
    raise ImportError('extractor.ray needs Ray Data: pip install "extractor[ray]"') from exc

from extractor._arrow import FINGERPRINT_KEY, pyarrow, result_row, result_schema, rows_to_table
from extractor._client import Client
from extractor._errors import ConfigurationError
from extractor._ray_limit import Keeper, SharedPacer, rate_limit
from extractor._schema import compile_schema
from extractor.batch._runner import BatchResult, Window
from extractor.batch._sources import Document

if TYPE_CHECKING:
    from ray.actor import ActorHandle
    from ray.data._internal.execution.interfaces import TaskContext
    from ray.data.block import Block
    from typing_extensions import Unpack

    from extractor._options import Options

__all__ = ["Extract", "extract", "rate_limit"]

logger = logging.getLogger("extractor.ray")

#: Rows per part file written with `output` (the last one of a run may hold fewer).
ROWS_PER_FILE: Final = 1_000


# --- the callable class -------------------------------------------------------------------------


class Extract:
    """`Dataset.map_batches(Extract, fn_constructor_args=(target,), ...)`: results of a batch.

    Takes batches with an id column and a text (or path) column; returns an Arrow table of
    `_arrow.result_schema(target)`, one row per document. `client` makes the actor's
    `Client` (a `Client` holds connections and locks and cannot travel; pass e.g.
    `functools.partial(Client, retry=RetryPolicy(...))`), `limit` is a `rate_limit()`
    actor, `skip` ids (or an `ObjectRef` of them) not to extract. Options are those of
    `Client.extract` (no `api_key`: see the module doc). Use it with
    `batch_format="pyarrow"`, over an actor pool.
    """

    def __init__(
        self,
        target: Any,
        *,
        text_column: str = "text",
        path_column: str | None = None,
        id_column: str = "id",
        concurrency: int = 16,
        limit: ActorHandle[Keeper] | None = None,
        client: Callable[[], Client] | None = None,
        skip: Any = None,
        **options: Unpack[Options],
    ) -> None:
        _refuse_key(options)
        self._client = client() if client is not None else Client()
        self._client.check(target, **options)  # a missing key on this node fails here
        compiled = compile_schema(target)
        self._target = target
        self._options: dict[str, Any] = dict(options)
        self._schema = result_schema(target)
        self._fingerprint = compiled.fingerprint
        self._dump = compiled.dump
        self._text, self._path, self._id = text_column, path_column, id_column
        self._concurrency = concurrency
        self._limit = limit
        self._pacer: SharedPacer | None = None
        if isinstance(skip, ray.ObjectRef):
            skip = ray.get(skip)
        self._skip = frozenset(_ids(skip)) if skip is not None else frozenset()

    async def __call__(self, batch: Any) -> Any:
        """The results of `batch`'s documents, whatever happens to them (never raises)."""
        pa = pyarrow()
        if self._pacer is None:
            self._pacer = SharedPacer(self._limit, self._concurrency)
        table = batch if isinstance(batch, pa.Table) else pa.table(batch)
        ids: list[Any] = []
        rows: dict[int, dict[str, Any]] = {}
        try:
            ids, documents = self._documents(table)
            window = Window(
                self._client,
                self._target,
                iter(documents),
                concurrency=max(1, len(documents)),
                limiter=self._pacer,
                options=self._options,
            )
            async for result in window.results():
                rows[result.id] = self._row(ids[result.id], result)
        except Exception as exc:  # the batch went wrong: its documents say so
            logger.warning("a batch of %d documents failed: %r", table.num_rows, exc)
            if not ids:
                ids = _column(table, self._id) or [None] * table.num_rows
            for index, doc_id in enumerate(ids):
                if index not in rows and str(doc_id) not in self._skip:
                    rows[index] = self._row(doc_id, BatchResult(index, None, exc, 0.0))
        return rows_to_table([rows[i] for i in sorted(rows)], self._schema)

    def _documents(self, table: Any) -> tuple[list[Any], list[Document]]:
        """The batch's ids, and a `Document` (by position) for each id not to skip."""
        ids = _column(table, self._id)
        if ids is None:
            raise ConfigurationError(f"the batch has no id column {self._id!r}")
        column = self._path or self._text
        values = _column(table, column)
        if values is None:
            raise ConfigurationError(f"the batch has no column {column!r}")
        documents = []
        for index, (doc_id, value) in enumerate(zip(ids, values, strict=True)):
            if str(doc_id) in self._skip:
                continue
            if doc_id is None:
                documents.append(Document(index, problem="the id is null"))
            elif not isinstance(value, str):
                what = "null" if value is None else f"a {type(value).__name__}, not a str"
                documents.append(Document(index, problem=f"the {column!r} value is {what}"))
            elif self._path is not None:
                documents.append(Document(index, path=value))
            elif not value.strip():
                documents.append(Document(index, problem="the document is empty"))
            else:
                documents.append(Document(index, value))
        return ids, documents

    def _row(self, doc_id: Any, result: BatchResult[Any]) -> dict[str, Any]:
        row = result_row(result, fingerprint=self._fingerprint, dump=self._dump)
        row["id"] = doc_id
        return row


def _column(table: Any, name: str) -> list[Any] | None:
    return table.column(name).to_pylist() if name in table.column_names else None


def _ids(values: Iterable[Any]) -> Iterable[str]:
    """Ids as they are in Parquet: text (an integer 7 is "7")."""
    if hasattr(values, "to_pylist"):
        values = values.to_pylist()
    return (str(v) for v in values if v is not None)


def _refuse_key(options: Any) -> None:
    if "api_key" in options:
        raise ConfigurationError(
            "extractor.ray takes no api_key: a key would travel in Ray's task specs and "
            "logs. Set the provider's key variable (e.g. OPENAI_API_KEY) in the workers' "
            "environment instead"
        )


# --- the output folder ------------------------------------------------------------------------


def _filesystem(output: str) -> tuple[Any, str]:
    """The `pyarrow.fs` filesystem of `output` and the folder's path on it."""
    fs = importlib.import_module("pyarrow.fs")
    if "://" in output:
        filesystem, path = fs.FileSystem.from_uri(output)
        return filesystem, path.rstrip("/")
    return fs.LocalFileSystem(), os.path.abspath(output)


class _PartFiles(Datasink[int]):
    """Writes each write task's rows as one part file, whole or not at all.

    The file is written under a hidden temporary name in the folder and then renamed,
    so readers only ever see complete files. Names carry the run and the task's index: a
    task Ray runs again writes the same file again.
    """

    def __init__(self, output: str, run: str, schema: Any, rows_per_file: int) -> None:
        self.output = output
        self.run = run
        self.schema = schema
        self.rows_per_file = rows_per_file

    @property
    def min_rows_per_write(self) -> int:
        return self.rows_per_file

    def on_write_start(self, schema: Any = None) -> None:
        filesystem, root = _filesystem(self.output)
        filesystem.create_dir(root, recursive=True)

    def write(self, blocks: Iterable[Block], ctx: TaskContext) -> int:
        pa = pyarrow()
        parquet = importlib.import_module("pyarrow.parquet")
        from ray.data.block import BlockAccessor

        tables = [BlockAccessor.for_block(block).to_arrow() for block in blocks]
        tables = [t.replace_schema_metadata(self.schema.metadata) for t in tables if t.num_rows]
        if not tables:
            return 0
        table = pa.concat_tables(tables)
        filesystem, root = _filesystem(self.output)
        name = f"part-{self.run}-{ctx.task_idx:05d}.parquet"
        temporary = f"{root}/.{name}.tmp"
        with filesystem.open_output_stream(temporary) as out:
            parquet.write_table(table, out)
        filesystem.move(temporary, f"{root}/{name}")
        return int(table.num_rows)


def _written_ids(output: str, fingerprint: str | None = None) -> list[str]:
    """The ids of every row in the part files of `output` (none if it does not exist).

    Sets aside a file that cannot be read (renamed `.NAME.torn`, so it is no longer read
    as part of the folder) and removes temporary files a killed run left. With
    `fingerprint`, a part written under another schema is a `ConfigurationError`.
    """
    fs = importlib.import_module("pyarrow.fs")
    parquet = importlib.import_module("pyarrow.parquet")
    filesystem, root = _filesystem(output)
    if filesystem.get_file_info(root).type == fs.FileType.NotFound:
        return []
    ids: list[str] = []
    for info in filesystem.get_file_info(fs.FileSelector(root)):
        name = info.path.rpartition("/")[2]
        if name.startswith(".") and name.endswith(".tmp"):
            filesystem.delete_file(info.path)  # a part a killed run did not finish
    for info in _parts(filesystem, root):
        folder, _, name = info.path.rpartition("/")
        try:
            with filesystem.open_input_file(info.path) as source:
                part = parquet.ParquetFile(source)
                written = (part.schema_arrow.metadata or {}).get(FINGERPRINT_KEY)
                column = part.read(columns=["id"]).column("id")
        except Exception as exc:  # torn by a crash (or not ours): its rows run again
            logger.warning("%s cannot be read (%s); setting it aside as .%s.torn", name, exc, name)
            filesystem.move(info.path, f"{folder}/.{name}.torn")
            continue
        if fingerprint is not None and written not in (None, fingerprint.encode()):
            raise ConfigurationError(
                f"{info.path} was written under another schema ({written.decode()}, the "
                f"target's is {fingerprint}): write to another output, or remove it to "
                "start over"
            )
        ids.extend(str(v) for v in column.to_pylist() if v is not None)
    return ids


def _parts(filesystem: Any, root: str) -> Iterable[Any]:
    """The `FileInfo` of each part file in the folder (none if there is no folder)."""
    fs = importlib.import_module("pyarrow.fs")
    if filesystem.get_file_info(root).type == fs.FileType.NotFound:
        return
    for info in filesystem.get_file_info(fs.FileSelector(root)):
        name = info.path.rpartition("/")[2]
        if name.endswith(".parquet") and not name.startswith((".", "_")):
            yield info


# --- the one call -------------------------------------------------------------------------------


def extract(
    dataset: ray.data.Dataset,
    target: Any,
    *,
    text_column: str = "text",
    path_column: str | None = None,
    id_column: str = "id",
    output: str | os.PathLike[str] | None = None,
    actors: int | tuple[int, int] = 2,
    concurrency_per_actor: int = 16,
    rpm: float | None = None,
    tpm: float | None = None,
    limit_name: str | None = None,
    client: Callable[[], Client] | None = None,
    batch_size: int | None = None,
    num_cpus: float | None = None,
    rows_per_file: int = ROWS_PER_FILE,
    **options: Unpack[Options],
) -> ray.data.Dataset:
    """A record of `target` for every row of `dataset`, as a Dataset of result rows.

    Without `output` the Dataset is lazy, as any `map_batches` (its limit's actor lives as
    long as the job). With `output`, the job runs to the end here, writing part files as
    it goes and skipping every id already written there, failed ones included (remove
    the folder to start over), and the Dataset returned is the whole folder read back:
    this run's rows and earlier ones'. `actors` is the pool's size or `(min, max)`;
    `num_cpus` each actor's share (default 1 for the embedded model, else 0.25: a
    provider's actor mostly waits); `batch_size` defaults to 4 x `concurrency_per_actor`
    (an actor runs 4 batches at once). `limit_name` shares one limit between pipelines
    (`rate_limit`). `client` makes each actor's `Client` (see `Extract`); options are
    those of `Client.extract`. Set-up mistakes (a missing column or key, a bad option)
    raise here, before anything runs.
    """
    _refuse_key(options)
    if concurrency_per_actor < 1:
        raise ConfigurationError(
            f"concurrency_per_actor must be 1 or more, not {concurrency_per_actor}"
        )
    made = client() if client is not None else Client()
    plan = made.prepare(target, "", **options)
    made.close()
    names = dataset.columns()  # None where the schema is not known before running
    for column in (id_column, path_column or text_column):
        if names is not None and column not in names:
            shown = ", ".join(sorted(map(repr, names))[:20])
            raise ConfigurationError(f"the dataset has no column {column!r} (it has {shown})")
    in_process = plan.endpoint.provider.backend is not None
    keeper = rate_limit(rpm, tpm, name=limit_name)
    skip = None
    if output is not None:
        output = os.fspath(output)
        skip = ray.put(pyarrow().array(_written_ids(output, plan.schema.fingerprint)))
    size = actors if isinstance(actors, int) else None
    low, high = (actors, actors) if isinstance(actors, int) else actors
    results = dataset.map_batches(
        Extract,
        fn_constructor_args=(target,),
        fn_constructor_kwargs={
            "text_column": text_column,
            "path_column": path_column,
            "id_column": id_column,
            "concurrency": concurrency_per_actor,
            "limit": keeper,
            "client": client,
            "skip": skip,
            **options,
        },
        batch_size=batch_size or 4 * concurrency_per_actor,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(
            size=size,
            min_size=None if size else low,
            max_size=None if size else high,
            max_concurrent_calls_per_actor=4,  # batches of one actor in flight together
        ),
        num_cpus=num_cpus if num_cpus is not None else (1.0 if in_process else 0.25),
    )
    if output is None:
        return results
    schema = result_schema(target)
    run = uuid.uuid4().hex[:12]
    try:
        results.write_datasink(_PartFiles(output, run, schema, rows_per_file))
    finally:
        if limit_name is None:
            ray.kill(keeper)
    filesystem, root = _filesystem(output)
    if next(iter(_parts(filesystem, root)), None) is None:
        return ray.data.from_arrow(schema.empty_table())
    return ray.data.read_parquet(output, file_extensions=["parquet"])
