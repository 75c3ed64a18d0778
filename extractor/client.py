"""`Client`: one pooled connection, and the extraction loop shared by sync and async calls.

The loop is written once, as a generator that yields request bodies and receives
decoded responses (`_conversation`). The sync and async drivers only send: each wraps
the send in the transport retry policy. The reask loop (validation failures) runs on
tenacity inside the generator, with its own budget, so the two loops never mix.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
import time
import weakref
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Generator,
    Iterable,
    Iterator,
    Mapping,
)
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Protocol, TypeVar, overload

import tenacity

from extractor.errors import (
    APIError,
    APIStatusError,
    APITimeoutError,
    AttemptError,
    ConfigurationError,
    InvalidAnswer,
    ParameterError,
    Refusal,
    RetriesExhausted,
    TruncatedAnswer,
)
from extractor.modes import build_body, decode
from extractor.params import check_params
from extractor.parse import load_answer
from extractor.prompts import document_messages, reask_messages, truncation_message
from extractor.providers import MODES, Endpoint, check_base_url, resolve
from extractor.result import Attempt, Extraction, Usage
from extractor.retry import RetryPolicy, describe
from extractor.schema import CompiledSchema, compile_schema

if TYPE_CHECKING:
    import asyncio

    import httpx

    from extractor.batch.runner import BatchResult
    from extractor.stream import AsyncExtractionStream, ExtractionStream

__all__ = ["Client"]

logger = logging.getLogger("extractor")

T = TypeVar("T")

DEFAULT_TIMEOUT: Final = 120.0
DEFAULT_DEADLINE: Final = 600.0
DEFAULT_MAX_RETRIES: Final = 2

#: What providers say when a prompt exceeds the model's context (OpenAI, Mistral, vLLM, ...).
_TOO_LONG: Final = re.compile(
    r"context[ _]length|maximum context|context window|too many tokens|prompt is too long", re.I
)

#: Modes that `auto` found rejected, per (base URL, model): the next call starts past them.
_mode_memory: dict[tuple[str, str], str] = {}
_mode_memory_lock = threading.Lock()


@dataclass(frozen=True)
class _Plan:
    """Everything one extraction needs, settled before the first request."""

    endpoint: Endpoint
    schema: CompiledSchema[Any]
    document: str
    modes: tuple[str, ...]  # the mode to use first, then the fallbacks (auto only)
    max_retries: int
    instructions: str | None
    params: dict[str, Any]
    examples: tuple[tuple[str, Any], ...] = ()  # worked examples: (document, wire record)
    timeout: float = DEFAULT_TIMEOUT  # one request, from connecting to its last byte
    deadline: float | None = DEFAULT_DEADLINE  # the extraction: every attempt and wait

    def expires(self) -> float | None:
        """The `time.monotonic()` instant the extraction must end by, counted from now."""
        return None if self.deadline is None else time.monotonic() + self.deadline

    def request_timeout(self, expires: float | None) -> float:
        """The next request's timeout: `timeout`, or what is left of the deadline."""
        if expires is None:
            return self.timeout
        left = expires - time.monotonic()
        if left <= 0:
            raise self.deadline_passed()
        return min(self.timeout, left)

    def deadline_passed(self) -> APITimeoutError:
        return APITimeoutError(
            f"the extraction's deadline of {self.deadline:g} s passed (deadline: it bounds "
            "every attempt of one extraction and the waits between them)",
            retryable=False,
        )


class Pacer(Protocol):
    """Paces the requests of many extractions (a batch job's rate limits): see `_adeliver`."""

    async def send(
        self,
        post: Callable[[httpx.AsyncClient, Endpoint, Any], Awaitable[Any]],
        client: httpx.AsyncClient,
        endpoint: Endpoint,
        body: Any,
    ) -> Any:
        """Wait for a turn, then `post(client, endpoint, body)`; learn from the outcome."""
        ...


class _LoopPools:
    """The async connection pools one event loop uses, one per proxy (None: direct)."""

    def __init__(self) -> None:
        self.clients: dict[str | None, httpx.AsyncClient] = {}
        self.guards: list[AsyncGenerator[None, None]] = []


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
    naming which passed.
    Proxies come from `HTTPS_PROXY`/`HTTP_PROXY`/`ALL_PROXY`/`NO_PROXY`, the same way for
    sync and async calls; loopback addresses are never proxied.
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
        **params: Any,
    ) -> None:
        _check_mode(mode)
        _check_retries(max_retries)
        _check_seconds("timeout", timeout)
        _check_seconds("deadline", deadline)
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
        self.retry = retry or RetryPolicy()
        self.params = check_params(params)
        self._transport = transport
        self._async_transport = async_transport
        self.max_connections = max_connections  # per event loop, for async calls
        self._http: dict[str | None, httpx.Client] = {}  # by proxy (None: direct)
        self._ahttp: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopPools] = (
            weakref.WeakKeyDictionary()
        )
        self._endpoints: dict[tuple[str | None, str | None, str | None], Endpoint] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Client(model={self.model!r}, mode={self.mode!r}, base_url={self.base_url!r})"

    # --- public calls ---------------------------------------------------------------------

    @overload
    def extract(self, target: type[T], document: str, **options: Any) -> T: ...
    @overload
    def extract(
        self, target: Mapping[str, Any], document: str, **options: Any
    ) -> dict[str, Any]: ...
    def extract(self, target: Any, document: str, **options: Any) -> Any:
        """Extract one record of `target` from `document`.

        `target` is a Pydantic model, a type such as `list[Model]`, or a JSON Schema dict
        (a validated dict comes back). Options: `model`, `base_url`, `api_key`, `mode`,
        `max_retries`, `instructions`, `examples` (worked examples, in place of the
        target's own; see `worked_examples`), and any request parameter (`temperature`,
        `seed`, `stop`, ...). Raises `RetriesExhausted` when no attempt validated.
        """
        return self.extract_result(target, document, **options).value

    @overload
    def extract_result(self, target: type[T], document: str, **options: Any) -> Extraction[T]: ...
    @overload
    def extract_result(
        self, target: Mapping[str, Any], document: str, **options: Any
    ) -> Extraction[dict[str, Any]]: ...
    def extract_result(self, target: Any, document: str, **options: Any) -> Extraction[Any]:
        """Like `extract`, returning the record with usage, attempts, mode and response id."""
        plan = self._plan(target, document, options)
        attempts: list[Attempt] = []
        conversation = _conversation(plan, attempts)
        expires = plan.expires()
        try:
            mode, body = next(conversation)
            while True:
                try:
                    payload = self._deliver(plan, mode, body, attempts, expires)
                except APIError as exc:
                    mode, body = conversation.throw(exc)
                else:
                    mode, body = conversation.send(payload)
        except StopIteration as done:
            result: Extraction[Any] = done.value
            return result

    @overload
    async def aextract(self, target: type[T], document: str, **options: Any) -> T: ...
    @overload
    async def aextract(
        self, target: Mapping[str, Any], document: str, **options: Any
    ) -> dict[str, Any]: ...
    async def aextract(self, target: Any, document: str, **options: Any) -> Any:
        """The async form of `extract`."""
        return (await self.aextract_result(target, document, **options)).value

    @overload
    async def aextract_result(
        self, target: type[T], document: str, **options: Any
    ) -> Extraction[T]: ...
    @overload
    async def aextract_result(
        self, target: Mapping[str, Any], document: str, **options: Any
    ) -> Extraction[dict[str, Any]]: ...
    async def aextract_result(self, target: Any, document: str, **options: Any) -> Extraction[Any]:
        """The async form of `extract_result`."""
        return await self._arun(self._plan(target, document, options))

    async def _arun(
        self, plan: _Plan, pacer: Pacer | None = None, attempts: list[Attempt] | None = None
    ) -> Extraction[Any]:
        """Drive the extraction loop on the event loop (batch jobs pass a `pacer`).

        `attempts`, if given, fills with the answers as they come, so a caller still has
        them when the call fails on the transport.
        """
        attempts = [] if attempts is None else attempts
        conversation = _conversation(plan, attempts)
        expires = plan.expires()
        try:
            mode, body = next(conversation)
            while True:
                try:
                    payload = await self._adeliver(plan, mode, body, attempts, pacer, expires)
                except APIError as exc:
                    mode, body = conversation.throw(exc)
                else:
                    mode, body = conversation.send(payload)
        except StopIteration as done:
            result: Extraction[Any] = done.value
            return result

    @overload
    def stream(self, target: type[T], document: str, **options: Any) -> ExtractionStream[T]: ...
    @overload
    def stream(
        self, target: Mapping[str, Any], document: str, **options: Any
    ) -> ExtractionStream[dict[str, Any]]: ...
    def stream(self, target: Any, document: str, **options: Any) -> ExtractionStream[Any]:
        """Partial records while the answer streams in, then the validated record.

        Iterate the returned `ExtractionStream`; after it ends, its `result` holds the
        `Extraction` (usage from the stream's last chunk, attempts). Options as `extract`.
        """
        from extractor.stream import ExtractionStream, shown_for

        plan = self._plan(target, document, options)
        return ExtractionStream(self, plan, shown_for(target, plan.schema, items=False))

    @overload
    def astream(
        self, target: type[T], document: str, **options: Any
    ) -> AsyncExtractionStream[T]: ...
    @overload
    def astream(
        self, target: Mapping[str, Any], document: str, **options: Any
    ) -> AsyncExtractionStream[dict[str, Any]]: ...
    def astream(self, target: Any, document: str, **options: Any) -> AsyncExtractionStream[Any]:
        """The async form of `stream`: `async for partial in client.astream(...)`."""
        from extractor.stream import AsyncExtractionStream, shown_for

        plan = self._plan(target, document, options)
        return AsyncExtractionStream(self, plan, shown_for(target, plan.schema, items=False))

    def stream_items(self, target: Any, document: str, **options: Any) -> ExtractionStream[Any]:
        """For a list target (`list[Model]`): each item as soon as it is complete and valid.

        Items are validated one by one as their text closes; the whole list is validated
        at the end as `extract` would, and `result.value` is that list.
        """
        from extractor.stream import ExtractionStream, shown_for

        plan = self._plan(target, document, options)
        return ExtractionStream(self, plan, shown_for(target, plan.schema, items=True))

    def astream_items(
        self, target: Any, document: str, **options: Any
    ) -> AsyncExtractionStream[Any]:
        """The async form of `stream_items`."""
        from extractor.stream import AsyncExtractionStream, shown_for

        plan = self._plan(target, document, options)
        return AsyncExtractionStream(self, plan, shown_for(target, plan.schema, items=True))

    def extract_many(
        self,
        target: Any,
        documents: Iterable[Any],
        *,
        concurrency: int = 16,
        rpm: float | None = None,
        tpm: float | None = None,
        **options: Any,
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
        from extractor.batch.runner import extract_many

        return extract_many(
            self, target, documents, concurrency=concurrency, rpm=rpm, tpm=tpm, options=options
        )

    def aextract_many(
        self,
        target: Any,
        documents: Iterable[Any],
        *,
        concurrency: int = 16,
        rpm: float | None = None,
        tpm: float | None = None,
        **options: Any,
    ) -> AsyncIterator[BatchResult[Any]]:
        """The async form of `extract_many`: `async for result in client.aextract_many(...)`."""
        from extractor.batch.runner import aextract_many

        return aextract_many(
            self, target, documents, concurrency=concurrency, rpm=rpm, tpm=tpm, options=options
        )

    def check(self, target: Any, **options: Any) -> str:
        """Raise now what the first extraction would raise for its set-up; send nothing.

        Settles the model, key, parameters, mode and schema dialect for `target`, so a
        batch can stop before reading any input. Returns the model as `provider/model`.
        """
        return self._plan(target, "", dict(options)).endpoint.label

    def close(self) -> None:
        """Close the pooled sync connections (async ones close with `aclose`)."""
        with self._lock:
            clients, self._http = list(self._http.values()), {}
        for client in clients:
            client.close()

    async def aclose(self) -> None:
        """Close the sync connections and those of the running event loop.

        Other loops' connections close as those loops shut down (`asyncio.run` does).
        """
        self.close()
        await self._aclose_loop()

    async def _aclose_loop(self) -> None:
        """Close the connections of the running event loop only."""
        import asyncio

        with self._lock:
            pools = self._ahttp.pop(asyncio.get_running_loop(), None)
        if pools is not None:
            for guard in pools.guards:
                await guard.aclose()  # each closes its client

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # --- plumbing -------------------------------------------------------------------------

    def _plan(self, target: Any, document: str, options: dict[str, Any]) -> _Plan:
        if not isinstance(document, str):
            raise ConfigurationError(
                f"the document must be a str, not {type(document).__name__}; "
                "decode bytes first (e.g. data.decode('utf-8'))"
            )
        model = options.pop("model", None) or self.model
        base_url = options.pop("base_url", None) or self.base_url
        api_key = options.pop("api_key", None) or self._api_key
        mode = options.pop("mode", None) or self.mode
        max_retries = options.pop("max_retries", None)
        max_retries = self.max_retries if max_retries is None else max_retries
        instructions = options.pop("instructions", None) or self.instructions
        examples = options.pop("examples", None)
        timeout = options.pop("timeout", None)
        timeout = self.timeout if timeout is None else timeout
        deadline = options.pop("deadline", self.deadline)
        _check_mode(mode)
        _check_retries(max_retries)
        _check_seconds("timeout", timeout)
        _check_seconds("deadline", deadline)
        endpoint = self._endpoint(model, base_url, api_key)
        dialect = endpoint.provider.dialect
        params = {**self.params, **check_params(options, temperature_max=dialect.temperature_max)}
        temperature = params.get("temperature")
        if temperature is not None and temperature > dialect.temperature_max:
            limit = dialect.temperature_max
            raise ParameterError(
                "temperature", f"{endpoint.provider.name} accepts 0 to {limit}, not {temperature}"
            )
        schema = compile_schema(target)
        if endpoint.provider.in_process and mode not in ("auto", *dialect.modes):
            raise ConfigurationError(
                f"local models take mode grounded or json_schema, not {mode!r}"
            )
        if mode == "grounded" and not endpoint.provider.in_process:
            raise ConfigurationError("mode 'grounded' runs only on local models (local/...)")
        modes = _auto_modes(endpoint) if mode == "auto" else (mode,)
        schema.dialect(dialect.schema_dialect)  # refuse an inexpressible schema before sending
        shown = schema.examples if examples is None else schema.worked(examples)
        return _Plan(
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
        )

    def _endpoint(self, model: str | None, base_url: str | None, api_key: str | None) -> Endpoint:
        key = (model, base_url, api_key)
        endpoint = self._endpoints.get(key)
        if endpoint is None:
            endpoint = resolve(model, base_url=base_url, api_key=api_key)
            if len(self._endpoints) < 64:
                self._endpoints[key] = endpoint
        return endpoint

    def _sync_client(self, endpoint: Endpoint) -> httpx.Client:
        """The sync connection pool for `endpoint`'s route (its proxy, or direct)."""
        import httpx  # here, not at the top: in-process models never touch the network

        from extractor.transport import sync_transport

        proxy = None if self._transport is not None else endpoint.proxy
        client = self._http.get(proxy)
        if client is None:
            with self._lock:
                client = self._http.get(proxy)
                if client is None:
                    # trust_env=False: the proxy is the one `resolve` chose, never httpx's
                    # own pick from the environment, so sync and async go the same way
                    client = httpx.Client(
                        transport=self._transport or sync_transport(proxy),
                        timeout=self.timeout,
                        follow_redirects=False,
                        trust_env=False,
                    )
                    self._http[proxy] = client
        return client

    async def _async_client(self, endpoint: Endpoint) -> httpx.AsyncClient:
        """The async connection pool of the running event loop, for `endpoint`'s route.

        A pool belongs to one loop, so each loop gets its own, and the loop closes it as
        it shuts down (`asyncio.run` finalizes async generators; `_closed_with_loop` is
        one): calls from one `asyncio.run` after another leave no connection open, and
        threads that each run their own loop never touch each other's connections.
        """
        import asyncio  # here, not at the top: only async callers need it

        import httpx

        from extractor.pool import default_async_transport

        loop = asyncio.get_running_loop()
        proxy = None if self._async_transport is not None else endpoint.proxy
        pools = self._ahttp.get(loop)
        if pools is not None and proxy in pools.clients:
            return pools.clients[proxy]
        with self._lock:
            if self._async_transport is not None and any(
                other is not loop and not other.is_closed() for other in self._ahttp
            ):
                raise ConfigurationError(
                    "this Client was given an async_transport, which serves one event loop, "
                    "and another loop is using it: give each thread its own Client, or "
                    "leave async_transport unset (then every loop gets its own pool)"
                )
            pools = self._ahttp.setdefault(loop, _LoopPools())
        # through a transport that keeps up with many connections (see extractor.pool)
        transport = self._async_transport or default_async_transport(
            self.max_connections, proxy=proxy
        )
        client = httpx.AsyncClient(
            transport=transport, timeout=self.timeout, follow_redirects=False, trust_env=False
        )
        guard = _closed_with_loop(client)
        await anext(guard)
        pools.clients[proxy] = client
        pools.guards.append(guard)
        return client

    def _deliver(
        self,
        plan: _Plan,
        mode: str,
        body: dict[str, Any],
        attempts: list[Attempt],
        expires: float | None = None,
    ) -> Any:
        """One request: to the provider over HTTP with transport retries, or in process.

        Each try gets the request timeout, cut to what is left of the deadline `expires`;
        no retry waits past it.
        """
        if plan.endpoint.provider.in_process:
            return _local(plan, mode, body, attempts)
        from extractor.transport import post

        client = self._sync_client(plan.endpoint)

        def once() -> Any:
            timeout = plan.request_timeout(expires)
            try:
                return post(client, plan.endpoint, body, timeout=timeout)
            except APITimeoutError:
                if timeout < plan.timeout:  # cut short by the deadline: that is what passed
                    raise plan.deadline_passed() from None
                raise

        return self.retry.retrying(_log_retry, until=expires)(once)

    async def _adeliver(
        self,
        plan: _Plan,
        mode: str,
        body: dict[str, Any],
        attempts: list[Attempt],
        pacer: Pacer | None = None,
        expires: float | None = None,
    ) -> Any:
        """The async twin of `_deliver`; an in-process model runs off the event loop.

        A `pacer` wraps every try of the request, retries included, so a batch job's
        rate limits see each one and learn of each 429.
        """
        if plan.endpoint.provider.in_process:
            import asyncio

            return await asyncio.to_thread(_local, plan, mode, body, list(attempts))
        from extractor.transport import apost

        client = await self._async_client(plan.endpoint)

        async def once() -> Any:
            timeout = plan.request_timeout(expires)
            send = functools.partial(apost, timeout=timeout)
            try:
                if pacer is not None:
                    return await pacer.send(send, client, plan.endpoint, body)
                return await send(client, plan.endpoint, body)
            except APITimeoutError:
                if timeout < plan.timeout:  # cut short by the deadline: that is what passed
                    raise plan.deadline_passed() from None
                raise

        return await self.retry.async_retrying(_log_retry, until=expires)(once)


async def _closed_with_loop(client: httpx.AsyncClient) -> AsyncGenerator[None, None]:
    """Hold `client` open until the event loop finalizes this generator, then close it."""
    try:
        yield
    finally:
        await client.aclose()


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ConfigurationError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")


def _check_seconds(name: str, value: Any) -> None:
    """A timeout or deadline: a positive number of seconds (a deadline may be None)."""
    if value is None and name == "deadline":
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigurationError(f"{name} must be a number of seconds > 0, not {value!r}")


def _check_retries(max_retries: Any) -> None:
    if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
        raise ConfigurationError(f"max_retries must be a whole number >= 0, not {max_retries!r}")


def _log_retry(state: tenacity.RetryCallState) -> None:
    logger.info("request failed, retrying: %s", describe(state))


def _auto_modes(endpoint: Endpoint) -> tuple[str, ...]:
    order = endpoint.provider.dialect.modes
    start = _mode_memory.get((endpoint.base_url, endpoint.model))
    return order[order.index(start) :] if start in order else order


def _rejects_mode(exc: APIError) -> bool:
    """Whether the server refused the request's shape (the mode), not the request itself."""
    if not isinstance(exc, APIStatusError):
        return False
    if _TOO_LONG.search(exc.body):  # the document is too long, in any mode: no fallback
        return False
    if exc.status in (400, 422):
        return True
    return exc.status >= 500 and "response_format" in exc.body


def _local(plan: _Plan, mode: str, body: dict[str, Any], attempts: list[Attempt]) -> Any:
    try:
        from extractor import local  # here, not at the top: it needs the optional extra
    except ImportError as exc:
        raise ConfigurationError(
            f"local models need the local extra ({exc.name} is missing): "
            'pip install "extractor[local]"'
        ) from None

    return local.complete(
        plan.endpoint.model,
        mode,
        document=plan.document,
        schema=plan.schema,
        examples=plan.examples,
        body=body,
        attempts=attempts,
    )


def _conversation(
    plan: _Plan, attempts: list[Attempt]
) -> Generator[tuple[str, dict[str, Any]], Any, Extraction[Any]]:
    """The extraction loop: yields (mode, request body), receives responses, returns the record.

    `attempts` fills as answers come back; the caller may read it (a local model uses
    the rejected values of earlier attempts).
    """
    modes = list(plan.modes)
    mode = modes.pop(0)
    fell_back = False
    messages = _opening(plan, mode)
    dialect = plan.endpoint.provider.dialect
    reasks = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(plan.max_retries + 1),
        retry=tenacity.retry_if_exception(lambda e: isinstance(e, AttemptError) and e.reaskable),
        reraise=True,
    )
    try:
        for attempt in reasks:
            with attempt:
                while True:
                    body = build_body(
                        mode,
                        model=plan.endpoint.model,
                        messages=messages,
                        schema=plan.schema,
                        dialect=dialect,
                        params=plan.params,
                    )
                    try:
                        payload = yield mode, body
                    except APIError as exc:
                        if not (modes and _rejects_mode(exc)):
                            raise
                        logger.info(
                            "%s rejected mode %s (%s); trying %s",
                            plan.endpoint.label,
                            mode,
                            exc,
                            modes[0],
                        )
                        mode = modes.pop(0)
                        fell_back = True
                        messages = _opening(plan, mode)
                        continue
                    if fell_back:
                        # remembered only once a weaker mode is answered: a request every
                        # mode refuses (a bad parameter, say) must not demote later calls
                        with _mode_memory_lock:
                            _mode_memory[(plan.endpoint.base_url, plan.endpoint.model)] = mode
                        fell_back = False
                    break
                answer = decode(mode, payload)
                error: AttemptError | None = None
                value: Any = None
                repairs: tuple[str, ...] = ()
                if answer.refusal:
                    error = Refusal(answer.refusal)
                elif answer.finish_reason == "length":
                    error = TruncatedAnswer(raw=answer.text)
                else:
                    try:  # the first JSON value in the answer that the schema accepts
                        value, repairs = load_answer(answer.text, plan.schema.load)
                    except (InvalidAnswer, TruncatedAnswer) as exc:
                        error = exc
                attempts.append(
                    Attempt(
                        mode,
                        answer.text,
                        answer.finish_reason,
                        answer.usage,
                        answer.response_id,
                        error,
                        answer.spans,
                        repairs=repairs,
                    )
                )
                if error is None:
                    return Extraction(value, plan.endpoint.label, mode, tuple(attempts))
                logger.info("attempt %d failed: %s", len(attempts), error)
                if isinstance(error, TruncatedAnswer):
                    messages = [*messages, truncation_message(error.detail)]
                elif isinstance(error, InvalidAnswer):
                    messages = [
                        *messages,
                        *reask_messages(
                            mode,
                            raw=answer.text,
                            errors=error.errors,
                            tool_call_id=answer.tool_call_id,
                            tool_name=plan.schema.name,
                        ),
                    ]
                raise error
    except Refusal:
        raise
    except AttemptError as exc:
        raise RetriesExhausted(attempts, usage=Usage.total(a.usage for a in attempts)) from exc
    raise AssertionError("unreachable: the reask loop returns or raises")  # pragma: no cover


def _opening(plan: _Plan, mode: str) -> list[dict[str, Any]]:
    return document_messages(
        plan.document,
        mode=mode,
        name=plan.schema.name,
        schema=plan.schema.schema,
        instructions=plan.instructions,
        examples=plan.examples,
    )
