"""`Client`: the settings of extractions, the backends that answer them, and the calls.

A call settles its `Plan` (model, mode, schema, options: all checked before anything is
sent), picks the backend of its provider (`HTTPBackend` for servers, the embedded model
for `local/...`, each wrapped in the transport retry policy) and hands both to the one
extraction loop (`extractor._conversation`), sync or async. The client holds the
connection pools, so reuse one: it keeps connections open between calls.
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, TypeVar, overload

from extractor._context import budget_chars, learn
from extractor._conversation import (
    DEFAULT_DEADLINE,
    DEFAULT_TIMEOUT,
    Plan,
    acomplete,
    auto_modes,
    complete,
)
from extractor._errors import ConfigurationError, DocumentTooLong, ParameterError, SchemaError
from extractor._options import (
    Options,
    Params,
    check_context,
    check_mode,
    check_retries,
    check_seconds,
)
from extractor._params import check_params
from extractor._providers import Endpoint, check_base_url, resolve
from extractor._result import Extraction
from extractor._retry import RetryPolicy
from extractor._schema import CompiledSchema, compile_schema
from extractor.backend import Backend, Paced, Pacer, Retrying
from extractor.events import Emitter, Hook

if TYPE_CHECKING:
    import httpx
    from typing_extensions import Unpack

    from extractor._cache import ResponseCache
    from extractor._http import Pools
    from extractor._stream import AsyncExtractionStream, ExtractionStream
    from extractor.batch._runner import BatchResult
    from extractor.documents import Source as DocumentSource

__all__ = ["DEFAULT_DEADLINE", "DEFAULT_MAX_RETRIES", "DEFAULT_TIMEOUT", "Client"]

T = TypeVar("T")
R = TypeVar("R")

logger = logging.getLogger("extractor")

DEFAULT_MAX_RETRIES = 2


class Client:
    """Extracts typed records; holds pooled HTTP clients (sync, and one per event loop).

    Defaults given here (model, mode, retries, request parameters such as
    `temperature`) apply to every call and can be overridden per call. Reuse one client:
    it keeps connections open between calls, and any number of threads and event loops
    may share it.

    `max_connections` caps the open connections of each event loop's pool (a batch job
    sets it to its concurrency). `timeout` bounds one request from connecting to its last
    byte, however slowly the server sends; `deadline` bounds one extraction: its attempts,
    reasks and the waits between them (None: no bound). Each raises `APITimeoutError`
    naming which passed. Proxies come from `HTTPS_PROXY`/`HTTP_PROXY`/`ALL_PROXY`/
    `NO_PROXY`, the same way for sync and async calls; loopback addresses are never
    proxied. `hooks` receive every event of this client's extractions (`extractor.events`).
    `backend` answers every request in place of the providers' own (a
    `testing.ScriptedBackend` in unit tests, say); it is wrapped in the retry policy.
    `cache` (a file path, or a `ResponseCache` several clients share) answers a request
    asked before from the file, sending nothing and costing nothing (`Usage.cached`
    counts those answers; see `extractor.ResponseCache`).
    """

    def __init__(
        self,
        model: str | None = None,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        mode: str = "auto",
        max_retries: int = DEFAULT_MAX_RETRIES,
        instructions: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        deadline: float | None = DEFAULT_DEADLINE,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        async_transport: httpx.AsyncBaseTransport | None = None,
        max_connections: int = 100,
        hooks: Iterable[Hook] = (),
        backend: Backend | None = None,
        context_tokens: int | None = None,
        cache: str | os.PathLike[str] | ResponseCache | None = None,
        **params: Unpack[Params],
    ) -> None:
        check_mode(mode)
        check_context(context_tokens)
        check_retries(max_retries)
        check_seconds("timeout", timeout)
        check_seconds("deadline", deadline)
        if isinstance(max_connections, bool) or not isinstance(max_connections, int):
            raise ConfigurationError(
                f"max_connections must be a whole number, not {max_connections!r}"
            )
        if max_connections < 1:
            raise ConfigurationError(f"max_connections must be 1 or more, not {max_connections}")
        if base_url:
            check_base_url(base_url)
        self.model = model
        self.base_url = base_url
        self._api_key = api_key
        self.mode = mode
        self.max_retries = max_retries
        self.instructions = instructions
        self.timeout = timeout
        self.deadline = deadline
        self.context_tokens = context_tokens
        self.retry = retry or RetryPolicy()
        self.params = check_params(params)
        self.max_connections = max_connections
        #: Sends this client's events to its hooks and the process-wide ones.
        self.emitter = Emitter(hooks)
        self._transport = transport
        self._async_transport = async_transport
        self._pools: Pools | None = None  # made at the first HTTP request (httpx loads then)
        self._http: Retrying | None = None
        self._given = backend
        self._backends: dict[str, Backend] = {}
        self._endpoints: dict[tuple[str | None, str | None, str | None], Endpoint] = {}
        self._lock = threading.Lock()
        self.cache: ResponseCache | None = None
        if cache is not None:
            from extractor._cache import ResponseCache

            self.cache = cache if isinstance(cache, ResponseCache) else ResponseCache(cache)

    def __repr__(self) -> str:
        return f"Client(model={self.model!r}, mode={self.mode!r}, base_url={self.base_url!r})"

    # --- public calls ---------------------------------------------------------------------

    @overload
    def extract(
        self, target: type[T], document: DocumentSource, **options: Unpack[Options]
    ) -> T: ...
    @overload
    def extract(
        self, target: Mapping[str, Any], document: DocumentSource, **options: Unpack[Options]
    ) -> dict[str, Any]: ...
    def extract(self, target: Any, document: DocumentSource, **options: Unpack[Options]) -> Any:
        """Extract one record of `target` from `document`.

        `target` is a Pydantic model, a type such as `list[Model]`, or a JSON Schema dict
        (a validated dict comes back). Options: `model`, `base_url`, `api_key`, `mode`,
        `max_retries`, `instructions`, `examples` (worked examples, in place of the
        target's own; see `worked_examples`), and any request parameter (`temperature`,
        `seed`, `stop`, ...). Raises `RetriesExhausted` when no attempt validated.
        """
        return self.extract_result(target, document, **options).value

    @overload
    def extract_result(
        self, target: type[T], document: DocumentSource, **options: Unpack[Options]
    ) -> Extraction[T]: ...
    @overload
    def extract_result(
        self, target: Mapping[str, Any], document: DocumentSource, **options: Unpack[Options]
    ) -> Extraction[dict[str, Any]]: ...
    def extract_result(
        self, target: Any, document: DocumentSource, **options: Unpack[Options]
    ) -> Extraction[Any]:
        """Like `extract`, returning the record with usage, attempts, mode and response id.

        A document longer than the model's context window (known, given as
        `context_tokens`, or learned from the provider's refusal) goes through chunks, and
        the result is a `LongExtraction`: see `extract_long`.
        """
        plan = self.prepare(target, document, **options)
        budget = budget_chars(plan)
        if budget is None or len(plan.document) <= budget:
            try:
                return complete(plan, self.backend(plan.endpoint), self.emitter)
            except DocumentTooLong as exc:
                budget = learn(plan, exc)
        import asyncio  # here, not at the top: a long document is the only sync use

        return _off_loop(lambda: asyncio.run(self._chunked(target, plan, budget, options)))

    @overload
    async def aextract(
        self, target: type[T], document: DocumentSource, **options: Unpack[Options]
    ) -> T: ...
    @overload
    async def aextract(
        self, target: Mapping[str, Any], document: DocumentSource, **options: Unpack[Options]
    ) -> dict[str, Any]: ...
    async def aextract(
        self, target: Any, document: DocumentSource, **options: Unpack[Options]
    ) -> Any:
        """The async form of `extract`."""
        return (await self.aextract_result(target, document, **options)).value

    @overload
    async def aextract_result(
        self, target: type[T], document: DocumentSource, **options: Unpack[Options]
    ) -> Extraction[T]: ...
    @overload
    async def aextract_result(
        self, target: Mapping[str, Any], document: DocumentSource, **options: Unpack[Options]
    ) -> Extraction[dict[str, Any]]: ...
    async def aextract_result(
        self, target: Any, document: DocumentSource, **options: Unpack[Options]
    ) -> Extraction[Any]:
        """The async form of `extract_result`."""
        plan = self.prepare(target, document, **options)
        budget = budget_chars(plan)
        if budget is None or len(plan.document) <= budget:
            try:
                return await acomplete(plan, self.backend(plan.endpoint), self.emitter)
            except DocumentTooLong as exc:
                budget = learn(plan, exc)
        return await self._chunked(target, plan, budget, options, close=False)

    async def _chunked(
        self,
        target: Any,
        plan: Plan,
        budget: int | None,
        options: Mapping[str, Any],
        *,
        close: bool = True,
    ) -> Extraction[Any]:
        """A document too long for one request, in chunks (`extract_long`'s engine)."""
        from extractor._long import DEFAULT_CONCURRENCY
        from extractor.batch._limiter import Limiter
        from extractor.batch._runner import run_chunks

        logger.info("the document is too long for %s; in chunks", plan.endpoint.label)
        try:
            return await run_chunks(
                self,
                target,
                plan,
                budget,
                limiter=Limiter(DEFAULT_CONCURRENCY),
                concurrency=DEFAULT_CONCURRENCY,
                options=options,
            )
        finally:
            if close:  # a private event loop: its connections die with it
                await self.aclose_loop()

    @overload
    def stream(
        self, target: type[T], document: DocumentSource, **options: Unpack[Options]
    ) -> ExtractionStream[T]: ...
    @overload
    def stream(
        self, target: Mapping[str, Any], document: DocumentSource, **options: Unpack[Options]
    ) -> ExtractionStream[dict[str, Any]]: ...
    def stream(
        self, target: Any, document: DocumentSource, **options: Unpack[Options]
    ) -> ExtractionStream[Any]:
        """Partial records while the answer streams in, then the validated record.

        Iterate the returned `ExtractionStream`; after it ends, its `result` holds the
        `Extraction` (usage from the stream's last chunk, attempts). Options as `extract`.
        """
        from extractor._stream import ExtractionStream, shown_for

        plan = self.prepare(target, document, **options)
        return ExtractionStream(
            plan,
            self.backend(plan.endpoint),
            self.emitter,
            shown_for(target, plan.schema, items=False),
        )

    @overload
    def astream(
        self, target: type[T], document: DocumentSource, **options: Unpack[Options]
    ) -> AsyncExtractionStream[T]: ...
    @overload
    def astream(
        self, target: Mapping[str, Any], document: DocumentSource, **options: Unpack[Options]
    ) -> AsyncExtractionStream[dict[str, Any]]: ...
    def astream(
        self, target: Any, document: DocumentSource, **options: Unpack[Options]
    ) -> AsyncExtractionStream[Any]:
        """The async form of `stream`: `async for partial in client.astream(...)`."""
        from extractor._stream import AsyncExtractionStream, shown_for

        plan = self.prepare(target, document, **options)
        return AsyncExtractionStream(
            plan,
            self.backend(plan.endpoint),
            self.emitter,
            shown_for(target, plan.schema, items=False),
        )

    def stream_items(
        self, target: Any, document: DocumentSource, **options: Unpack[Options]
    ) -> ExtractionStream[Any]:
        """For a list target (`list[Model]`): each item as soon as it is complete and valid.

        Items are validated one by one as their text closes; the whole list is validated
        at the end as `extract` would, and `result.value` is that list.
        """
        from extractor._stream import ExtractionStream, shown_for

        plan = self.prepare(target, document, **options)
        return ExtractionStream(
            plan,
            self.backend(plan.endpoint),
            self.emitter,
            shown_for(target, plan.schema, items=True),
        )

    def astream_items(
        self, target: Any, document: DocumentSource, **options: Unpack[Options]
    ) -> AsyncExtractionStream[Any]:
        """The async form of `stream_items`."""
        from extractor._stream import AsyncExtractionStream, shown_for

        plan = self.prepare(target, document, **options)
        return AsyncExtractionStream(
            plan,
            self.backend(plan.endpoint),
            self.emitter,
            shown_for(target, plan.schema, items=True),
        )

    @overload
    def extract_many(
        self,
        target: type[T],
        documents: Iterable[Any],
        *,
        concurrency: int = 16,
        rpm: float | None = None,
        tpm: float | None = None,
        **options: Unpack[Options],
    ) -> Iterator[BatchResult[T]]: ...
    @overload
    def extract_many(
        self,
        target: Mapping[str, Any],
        documents: Iterable[Any],
        *,
        concurrency: int = 16,
        rpm: float | None = None,
        tpm: float | None = None,
        **options: Unpack[Options],
    ) -> Iterator[BatchResult[dict[str, Any]]]: ...
    def extract_many(
        self,
        target: Any,
        documents: Iterable[Any],
        *,
        concurrency: int = 16,
        rpm: float | None = None,
        tpm: float | None = None,
        **options: Unpack[Options],
    ) -> Iterator[BatchResult[Any]]:
        """Extract a record from each document, `concurrency` at a time; yield as each finishes.

        `documents` is an iterable of texts (ids are their positions), of `(id, text)`
        pairs, of `extractor.batch.Document`s, or a mapping of id to text; it is read
        lazily, and results are not kept, so memory stays flat however many there are.
        Each `BatchResult` carries the id and either the `Extraction` or the error: a
        bad document fails alone. `rpm` and `tpm` cap requests and tokens per minute;
        a 429 slows every request down. Options are those of `extract`.

        The requests run on a private event loop while you wait for the next result (in
        async code, use `aextract_many`); a set-up mistake is raised here, at the call.
        """
        from extractor.batch._runner import extract_many

        return extract_many(
            self, target, documents, concurrency=concurrency, rpm=rpm, tpm=tpm, options=options
        )

    @overload
    def aextract_many(
        self,
        target: type[T],
        documents: Iterable[Any],
        *,
        concurrency: int = 16,
        rpm: float | None = None,
        tpm: float | None = None,
        **options: Unpack[Options],
    ) -> AsyncIterator[BatchResult[T]]: ...
    @overload
    def aextract_many(
        self,
        target: Mapping[str, Any],
        documents: Iterable[Any],
        *,
        concurrency: int = 16,
        rpm: float | None = None,
        tpm: float | None = None,
        **options: Unpack[Options],
    ) -> AsyncIterator[BatchResult[dict[str, Any]]]: ...
    def aextract_many(
        self,
        target: Any,
        documents: Iterable[Any],
        *,
        concurrency: int = 16,
        rpm: float | None = None,
        tpm: float | None = None,
        **options: Unpack[Options],
    ) -> AsyncIterator[BatchResult[Any]]:
        """The async form of `extract_many`: `async for result in client.aextract_many(...)`."""
        from extractor.batch._runner import aextract_many

        return aextract_many(
            self, target, documents, concurrency=concurrency, rpm=rpm, tpm=tpm, options=options
        )

    def check(self, target: Any, **options: Unpack[Options]) -> str:
        """Raise now what the first extraction would raise for its set-up; send nothing.

        Settles the model, key, parameters, mode and schema dialect for `target`, so a
        batch can stop before reading any input. Returns the model as `provider/model`.
        """
        return self.prepare(target, "", **options).endpoint.label

    def close(self) -> None:
        """Close the pooled sync connections (async ones close with `aclose`)."""
        if self._pools is not None:
            self._pools.close()

    async def aclose(self) -> None:
        """Close the sync connections and those of the running event loop.

        Other loops' connections close as those loops shut down (`asyncio.run` does).
        """
        self.close()
        await self.aclose_loop()

    async def aclose_loop(self) -> None:
        """Close the connections of the running event loop only (a given backend's too)."""
        if self._pools is not None:
            await self._pools.aclose_loop()
        if self._given is not None:
            await self._given.aclose()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # --- for the drivers: plans and backends -----------------------------------------------

    def prepare(self, target: Any, document: DocumentSource, **options: Unpack[Options]) -> Plan:
        """Settle one extraction: the call's options over this client's defaults, checked.

        Raises `ConfigurationError` (or `ParameterError`, `SchemaError`) for a set-up
        mistake; nothing is sent. Streams and batch jobs drive the plan with `backend`.
        """
        pages: tuple[int, ...] = ()
        if not isinstance(document, str):
            document, pages = _document_text(document)
        given: dict[str, Any] = dict(options)
        model = given.pop("model", None) or self.model
        called_url = given.pop("base_url", None)
        base_url = called_url or self.base_url
        api_key = given.pop("api_key", None) or self._api_key
        mode = given.pop("mode", None) or self.mode
        max_retries = given.pop("max_retries", None)
        max_retries = self.max_retries if max_retries is None else max_retries
        instructions = given.pop("instructions", None) or self.instructions
        examples = given.pop("examples", None)
        timeout = given.pop("timeout", None)
        timeout = self.timeout if timeout is None else timeout
        deadline = given.pop("deadline", self.deadline)
        context = given.pop("context_tokens", None) or self.context_tokens
        check_mode(mode)
        check_context(context)
        check_retries(max_retries)
        check_seconds("timeout", timeout)
        check_seconds("deadline", deadline)
        if called_url:  # the client's own was checked when it was made
            check_base_url(called_url)
        endpoint = self._endpoint(model, base_url, api_key)
        dialect = endpoint.provider.dialect
        params = {**self.params, **check_params(given, temperature_max=dialect.temperature_max)}
        temperature = params.get("temperature")
        if temperature is not None and temperature > dialect.temperature_max:
            limit = dialect.temperature_max
            raise ParameterError(
                "temperature", f"{endpoint.provider.name} accepts 0 to {limit}, not {temperature}"
            )
        schema = compile_schema(target)
        _check_offered(endpoint, mode)
        modes = auto_modes(endpoint) if mode == "auto" else (mode,)
        strict = _fits(schema, endpoint, mode)  # before anything is sent, never by a 400
        shown = schema.examples if examples is None else schema.worked(examples)
        return Plan(
            endpoint,
            schema,
            document,
            modes,
            max_retries,
            instructions,
            params,
            shown,
            timeout,
            deadline,
            strict,
            context,
            pages,
        )

    def backend(self, endpoint: Endpoint, *, pacer: Pacer | None = None) -> Backend:
        """What answers `endpoint`'s requests: its provider's backend, with retries.

        With a `pacer` (a batch job's rate limits), each try waits its turn:
        `Retrying(Paced(backend))`.
        """
        inner: Backend
        path = endpoint.provider.backend
        if self._given is not None:
            inner = self._given
        elif path is None:
            http = self._http_backend()
            if pacer is None:
                return http if self.cache is None else self._cached(http)
            inner = http.inner
        else:
            inner = self._provider_backend(path)
        stack = Retrying(inner if pacer is None else Paced(inner, pacer), self.retry)
        return stack if self.cache is None else self._cached(stack)

    def _cached(self, backend: Backend) -> Backend:
        """`backend` answered from the cache first: a hit waits for no rate limit."""
        from extractor._cache import Cached

        assert self.cache is not None
        return Cached(backend, self.cache)

    def _http_backend(self) -> Retrying:
        """The HTTP backend over this client's pools, made once (httpx is imported here)."""
        if self._http is None:
            from extractor._http import HTTPBackend, Pools

            with self._lock:
                if self._http is None:
                    self._pools = Pools(
                        timeout=self.timeout,
                        transport=self._transport,
                        async_transport=self._async_transport,
                        max_connections=self.max_connections,
                    )
                    self._http = Retrying(HTTPBackend(self._pools), self.retry)
        return self._http

    def _provider_backend(self, path: str) -> Backend:
        backend = self._backends.get(path)
        if backend is None:
            with self._lock:
                backend = self._backends.get(path)
                if backend is None:
                    module, _, name = path.partition(":")
                    backend = getattr(importlib.import_module(module), name)()
                    self._backends[path] = backend
        return backend

    def _endpoint(self, model: str | None, base_url: str | None, api_key: str | None) -> Endpoint:
        key = (model, base_url, api_key)
        endpoint = self._endpoints.get(key)
        if endpoint is None:
            endpoint = resolve(model, base_url=base_url, api_key=api_key)
            if len(self._endpoints) < 64:
                self._endpoints[key] = endpoint
        return endpoint


def _off_loop(run: Callable[[], R]) -> R:
    """`run()` here, or in a thread of its own when this thread runs an event loop (a
    notebook calling `extract`), since a blocking call cannot drive another loop in it."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return run()
    with ThreadPoolExecutor(1, thread_name_prefix="extractor-chunks") as pool:
        return pool.submit(run).result()


def _document_text(document: Any) -> tuple[str, tuple[int, ...]]:
    """The text of a `documents.Document`, a path or a file's bytes (PDF, DOCX, HTML, ...),
    with where each of its pages starts."""
    import os

    from extractor.documents import Document, read

    if isinstance(document, (Document, bytes, os.PathLike)):
        read_ = read(document)
        return read_.text, read_.pages
    raise ConfigurationError(
        f"the document must be text (str), a path, bytes or an extractor.documents.Document, "
        f"not {type(document).__name__}"
    )


def _fits(schema: CompiledSchema[Any], endpoint: Endpoint, mode: str) -> bool:
    """Whether the schema goes strict; SchemaError if no form the provider takes carries it.

    A schema the provider's strict dialect cannot say (an open-ended object, an untyped
    value) goes, in `auto` and in the modes whose schema rides in the prompt, in its
    loose dialect: non-strict `json_schema` or tools. An explicit `json_schema` or `tools`
    call is told so, with the path and what would work.
    """
    dialect = endpoint.provider.dialect
    try:
        schema.dialect(dialect.schema_dialect)
    except SchemaError as exc:
        loose = dialect.loose_schema_dialect
        if loose is None:
            raise
        schema.dialect(loose)  # a schema no dialect can carry: refused here
        if mode in ("json_schema", "tools"):
            raise SchemaError(
                f"{exc.reason} (mode {mode!r} sends it strict); mode='auto' sends it as "
                "non-strict json_schema, and json_object or prompt carry it too",
                path=exc.path,
            ) from None
        logger.info("%s: %s; it goes as non-strict %s", schema.name, exc, "json_schema")
        return False
    return True


def _check_offered(endpoint: Endpoint, mode: str) -> None:
    """Refuse a mode the provider does not take (`auto` picks among those it does)."""
    accepted = endpoint.provider.dialect.accepts
    if mode == "auto" or mode in accepted:
        return
    provider = endpoint.provider.name
    if mode == "grounded":
        raise ConfigurationError(
            f"mode 'grounded' runs only on local models (local/...), not on {provider}"
        )
    raise ConfigurationError(f"{provider} models take mode {' or '.join(accepted)}, not {mode!r}")
