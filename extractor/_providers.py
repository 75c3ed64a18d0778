"""Providers: where requests go, which key they carry, and the dialect they speak.

Three separate things, kept apart so a new provider is a table entry:

- `Dialect`: the wire format and capabilities (parameter names, how to force a tool,
  which schema dialect, which modes `auto` tries in order).
- `Provider`: a preset — a base URL, an environment variable for the key, a dialect.
- `Endpoint`: a provider resolved for one call: URL, key and model name.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlsplit

from extractor._errors import ConfigurationError

__all__ = [
    "MODES",
    "PROVIDERS",
    "Dialect",
    "Endpoint",
    "Provider",
    "check_base_url",
    "proxy_for",
    "resolve",
]

#: Every mode; `auto` picks among the others by the dialect's order. `grounded` (values
#: chosen from the document) runs only in process, on local models.
MODES: Final = ("auto", "json_schema", "tools", "json_object", "prompt", "grounded")

#: The environment variable naming the model used when none is given.
MODEL_ENV: Final = "EXTRACTOR_MODEL"
#: The model used when none is given and the variable is unset: embedded, offline.
DEFAULT_MODEL: Final = "local/gemma-3-270m"


@dataclass(frozen=True)
class Dialect:
    """How one family of servers wants its requests, and what it can do."""

    schema_dialect: str = "openai-strict"
    #: Where a schema the strict dialect cannot say goes instead (non-strict `json_schema`
    #: and tools); None where `schema_dialect` is already the whole of what is accepted.
    loose_schema_dialect: str | None = None
    #: The order `auto` tries modes in; the first is the best the server offers.
    modes: tuple[str, ...] = ("json_schema", "tools", "json_object", "prompt")
    #: The modes a call may ask for by name (`auto` aside).
    accepts: tuple[str, ...] = ("json_schema", "tools", "json_object", "prompt")
    #: Parameters renamed on the wire: common name → this dialect's name.
    renames: Mapping[str, str] = field(default_factory=dict)
    #: `tool_choice` value that forces the one tool; `None` means the named-function form.
    force_tool: str | None = None
    #: Whether function tools carry `strict: true`.
    strict_tools: bool = True
    #: Highest temperature the server accepts.
    temperature_max: float = 2.0
    #: Whether `json_object` mode also carries the schema (llama.cpp's server enforces it).
    json_object_schema: bool = False
    #: Whether structured requests ask the router for providers that honour every parameter.
    require_parameters: bool = False
    #: Whether the `strict` flag goes into `json_schema` response formats.
    strict_json_schema: bool = True
    #: Whether a streaming request may ask for usage (`stream_options`); Mistral rejects it
    #: and sends usage in the last chunk anyway.
    stream_usage: bool = True


@dataclass(frozen=True)
class Provider:
    """A preset: where a provider lives, where its key comes from, how it speaks."""

    name: str
    base_url: str
    key_env: str | None
    dialect: Dialect
    #: An environment variable that overrides `base_url` (the ecosystem's convention).
    base_url_env: str | None = None
    #: The backend serving this provider, as `module:Class` (a `backend.Backend` made with
    #: no arguments); None for HTTP. One that is not HTTP takes no URL and no key.
    backend: str | None = None
    #: The context window in tokens of every model this provider serves, when it is the
    #: same for all (the embedded model's); else None (see `extractor._context.KNOWN`).
    context_tokens: int | None = None
    #: Whether its models answer null for a value a text does not hold. The embedded
    #: model does not (it picks its likeliest reading, or null always, for an optional
    #: field), so the chunks of a long document ask it for the target as declared.
    tells_absence: bool = True
    #: The shape of its batch API (files and batch jobs), `openai` or `mistral`; None
    #: when it has none (`extractor.batch._api`).
    batch_api: str | None = None


OPENAI_DIALECT: Final = Dialect(loose_schema_dialect="openai")
MISTRAL_DIALECT: Final = Dialect(
    schema_dialect="mistral",
    renames={"seed": "random_seed", "max_completion_tokens": "max_tokens"},
    force_tool="any",
    strict_tools=False,
    temperature_max=1.5,
    stream_usage=False,
)
LOCAL_SERVER_DIALECT: Final = Dialect(
    schema_dialect="plain",
    renames={"max_completion_tokens": "max_tokens"},
    strict_tools=False,
    strict_json_schema=False,
)

PROVIDERS: Final[Mapping[str, Provider]] = {
    p.name: p
    for p in (
        Provider(
            "openrouter",
            "https://openrouter.ai/api/v1",
            "OPENROUTER_API_KEY",
            Dialect(require_parameters=True, loose_schema_dialect="openai"),
        ),
        Provider(
            "openai",
            "https://api.openai.com/v1",
            "OPENAI_API_KEY",
            OPENAI_DIALECT,
            "OPENAI_BASE_URL",
            batch_api="openai",
        ),
        Provider(
            "mistral",
            "https://api.mistral.ai/v1",
            "MISTRAL_API_KEY",
            MISTRAL_DIALECT,
            batch_api="mistral",
        ),
        Provider(
            "ollama",
            "http://127.0.0.1:11434/v1",
            None,
            Dialect(
                schema_dialect="plain",
                # its ChatCompletionRequest reads max_tokens only (ollama/openai/openai.go)
                renames={"max_completion_tokens": "max_tokens"},
                modes=("json_schema", "json_object", "prompt"),
                strict_tools=False,
                strict_json_schema=False,
            ),
        ),
        Provider("vllm", "http://127.0.0.1:8000/v1", None, LOCAL_SERVER_DIALECT),
        Provider(
            "local",
            "local:",
            None,
            Dialect(
                schema_dialect="plain",
                modes=("grounded", "json_schema"),
                accepts=("grounded", "json_schema"),
                strict_tools=False,
                strict_json_schema=False,
            ),
            backend="extractor._local.backend:LocalBackend",
            context_tokens=4096,  # the engine's n_ctx (`extractor._local.engine`)
            tells_absence=False,
        ),
        Provider(
            "test",
            "test:",
            None,
            Dialect(
                schema_dialect="plain",
                strict_tools=False,
                strict_json_schema=False,
            ),
            backend="extractor._scripted:ScriptedBackend",
        ),
        Provider(
            "llamacpp",
            "http://127.0.0.1:8080/v1",
            None,
            Dialect(
                schema_dialect="plain",
                modes=("json_schema", "json_object", "prompt"),
                renames={"max_completion_tokens": "max_tokens"},
                strict_tools=False,
                strict_json_schema=False,
                json_object_schema=True,
            ),
        ),
    )
}


class _Secret(str):
    """A key that never shows itself in a repr or a traceback's locals."""

    def __repr__(self) -> str:
        return "'***'"


@dataclass(frozen=True)
class Endpoint:
    """A provider resolved for a call: the URL, the key and the model name on the wire."""

    provider: Provider
    model: str
    base_url: str
    api_key: str | None = field(repr=False)
    #: The proxy requests go through (from `HTTPS_PROXY` and its kin), or None: direct.
    proxy: str | None = field(default=None, repr=False)

    @property
    def label(self) -> str:
        """`provider/model`, as a user writes it."""
        return f"{self.provider.name}/{self.model}"

    def headers(self) -> dict[str, str]:
        """The headers every request carries (the key, where there is one)."""
        if self.api_key:
            return {"Authorization": f"Bearer {self.api_key}"}
        return {}


def resolve(
    model: str | None,
    *,
    base_url: str | None = None,
    api_key: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Endpoint:
    """Turn `provider/model` into an endpoint; check URL and key.

    With no model, `$EXTRACTOR_MODEL` is used, and without it the embedded default.

    Raises `ConfigurationError` for an unknown provider, a missing key (naming the
    environment variable to set), or a key that would travel over plain HTTP.
    """
    env: Mapping[str, Any] = os.environ if environ is None else environ
    spec = model or env.get(MODEL_ENV) or DEFAULT_MODEL
    name, sep, model_name = spec.partition("/")
    if not sep or not model_name:
        raise ConfigurationError(
            f"model {spec!r} should read 'provider/model', e.g. 'openai/gpt-4o-mini'"
        )
    provider = PROVIDERS.get(name)
    if provider is None:
        raise ConfigurationError(
            f"unknown provider {name!r} in model {spec!r}; known: {', '.join(PROVIDERS)} "
            "(any OpenAI-compatible server works as 'openai/MODEL' with base_url=...)"
        )
    if provider.backend is not None:  # served by its own backend: no URL, no key
        return Endpoint(provider, model_name, provider.base_url, None)
    url = (
        base_url or (provider.base_url_env and env.get(provider.base_url_env)) or provider.base_url
    )
    url = str(url).rstrip("/")
    parts = urlsplit(url)
    scheme = parts.scheme
    check_base_url(url)
    if scheme not in ("http", "https"):
        raise ConfigurationError(f"base_url {url!r} must start with http:// or https://")
    key = api_key or (provider.key_env and env.get(provider.key_env)) or None
    if provider.key_env and not key and not _is_loopback(url):
        raise ConfigurationError(
            f"no API key for {name}: set the {provider.key_env} environment variable "
            "(in Python, api_key=... works too)"
        )
    if key and scheme == "http" and not _is_loopback(url):
        raise ConfigurationError(
            f"refusing to send an API key over plain HTTP to {parts.hostname}; "
            "use https:// (plain HTTP is allowed only to loopback addresses)"
        )
    # A key travels only inside TLS to the server itself, or in the clear straight to a
    # loopback address: loopback is never proxied, and through a proxy an https request
    # is a tunnel the proxy cannot read.
    proxy = proxy_for(url, env)
    return Endpoint(provider, model_name, url, _Secret(key) if key else None, proxy)


def check_base_url(url: str) -> None:
    """Refuse a base URL that carries a user name or password, without repeating them."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return
    shown = parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]).geturl()
    raise ConfigurationError(
        f"base_url {shown!r} carries a user name or password, which would go with every "
        "request and into logs: give the key as api_key=... (or in the provider's key "
        "variable) and base_url without it"
    )


def proxy_for(url: str, environ: Mapping[str, str]) -> str | None:
    """The proxy a request to `url` goes through, read from the environment as curl does.

    `https_proxy` / `http_proxy` by the URL's scheme, else `all_proxy` (lower case
    first, then upper case), unless `no_proxy` names the host (`*`, a host, a domain
    and its subdomains, with or without a port). Loopback addresses are never proxied:
    a proxy cannot reach this machine's loopback. Both the sync and the async client
    use what this returns; neither reads the environment itself.
    """
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if not host or _is_loopback(url):
        return None

    def read(name: str) -> str:
        return str(environ.get(name) or environ.get(name.upper()) or "").strip()

    for entry in read("no_proxy").split(","):
        entry = entry.strip().lower()
        if entry == "*":
            return None
        name = entry.rsplit(":", 1)[0] if entry.count(":") == 1 else entry
        name = name.lstrip(".")
        if name and (host == name or host.endswith("." + name)):
            return None
    proxy = read(f"{parts.scheme}_proxy") or read("all_proxy")
    if not proxy:
        return None
    return proxy if "://" in proxy else f"http://{proxy}"


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
