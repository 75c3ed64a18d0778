"""Providers and keys: resolution, clear configuration errors, keys kept secret."""

from __future__ import annotations

import logging

import pytest
from pydantic import BaseModel

from extractor import APIStatusError, Client, ConfigurationError, RetriesExhausted
from extractor._providers import PROVIDERS, resolve
from extractor.testing import Answer, Fault

SECRET = "sk-test-0123456789abcdefghijklmnop"


class Person(BaseModel):
    name: str


@pytest.mark.parametrize(
    ("provider", "variable"),
    [
        ("openrouter", "OPENROUTER_API_KEY"),
        ("openai", "OPENAI_API_KEY"),
        ("mistral", "MISTRAL_API_KEY"),
    ],
)
def test_missing_key_names_the_variable(provider, variable):
    with pytest.raises(ConfigurationError, match=variable):
        resolve(f"{provider}/some-model", environ={})


def test_key_comes_from_the_environment():
    endpoint = resolve(
        "openrouter/mistralai/mistral-large-2407", environ={"OPENROUTER_API_KEY": SECRET}
    )
    assert endpoint.model == "mistralai/mistral-large-2407"
    assert endpoint.base_url == "https://openrouter.ai/api/v1"
    assert endpoint.headers() == {"Authorization": f"Bearer {SECRET}"}


def test_unknown_provider_lists_the_known_ones():
    with pytest.raises(ConfigurationError, match="openrouter") as caught:
        resolve("anthropic/claude", environ={})
    assert "anthropic" in str(caught.value)


def test_model_without_a_provider_says_how_to_write_it():
    with pytest.raises(ConfigurationError, match="provider/model"):
        resolve("gpt-4o", environ={})


def test_model_from_extractor_model_variable():
    endpoint = resolve(None, environ={"EXTRACTOR_MODEL": "vllm/qwen"})
    assert (endpoint.provider.name, endpoint.model) == ("vllm", "qwen")


def test_no_model_at_all_means_the_embedded_default():
    endpoint = resolve(None, environ={})
    assert endpoint.label == "local/gemma-3-270m"
    assert endpoint.provider.backend is not None and endpoint.headers() == {}


def test_openai_base_url_variable_is_honoured():
    env = {"OPENAI_API_KEY": SECRET, "OPENAI_BASE_URL": "https://proxy.example/v1/"}
    assert resolve("openai/gpt-4o", environ=env).base_url == "https://proxy.example/v1"


def test_key_is_never_sent_over_plain_http_to_a_remote_host():
    with pytest.raises(ConfigurationError, match="plain HTTP"):
        resolve("openai/gpt-4o", base_url="http://api.example.com/v1", api_key=SECRET, environ={})
    assert resolve("openai/gpt-4o", base_url="http://127.0.0.1:9/v1", api_key=SECRET, environ={})


def test_local_presets_need_no_key():
    for name in ("ollama", "vllm", "llamacpp"):
        assert PROVIDERS[name].key_env is None
        assert resolve(f"{name}/m", environ={}).headers() == {}


def test_the_key_is_sent_as_a_bearer_token(make_client, server):
    server.script(Answer(content='{"name": "Ann"}'))
    make_client(api_key=SECRET).extract(Person, "Ann", mode="json_schema")
    assert server.requests[0].headers["authorization"] == f"Bearer {SECRET}"


def test_key_never_reaches_reprs_errors_or_logs(make_client, server, caplog):
    caplog.set_level(logging.DEBUG, logger="extractor")
    echo = {"error": {"message": f"invalid key {SECRET}"}}
    server.script(Fault(500, body=echo), Fault(401, body=echo))
    client = make_client(api_key=SECRET)
    with pytest.raises(APIStatusError) as caught:
        client.extract(Person, "Ann", mode="json_schema")
    error = caught.value
    for text in (
        repr(client),
        str(error),
        repr(error),
        error.body,
        repr(error.headers),
        caplog.text,
    ):
        assert SECRET not in text
    assert "***" in error.body
    endpoint = resolve("openai/m", api_key=SECRET, environ={})
    assert SECRET not in repr(endpoint)


def test_attempt_records_never_hold_the_key(make_client, server):
    server.handler = lambda request: Answer(content="nope")
    with pytest.raises(RetriesExhausted) as caught:
        make_client(api_key=SECRET, max_retries=1).extract(Person, "Ann", mode="json_schema")
    assert SECRET not in repr(caught.value.attempts)


def test_client_is_reusable_across_providers(server):
    client = Client(base_url=server.base_url)
    server.handler = lambda request: Answer(content='{"name": "Ann"}')
    for model in ("openai/a", "vllm/b", "llamacpp/c"):
        assert client.extract(Person, "Ann", model=model, mode="prompt") == Person(name="Ann")
    assert [r.model for r in server.requests] == ["a", "b", "c"]
    client.close()


@pytest.mark.parametrize("preset", ["ollama", "vllm", "llamacpp"])
def test_local_servers_get_the_token_limit_under_the_name_they_read(
    make_client, server, preset: str
) -> None:
    # Ollama's and llama.cpp's request types know max_tokens only: the newer name would
    # be dropped without a word, and the answer run as long as the server lets it
    server.script(Answer(content='{"name": "Ann"}'))
    make_client(preset).extract(Person, "Ann", mode="json_schema", max_completion_tokens=50)
    body = server.requests[0].body or {}
    assert body.get("max_tokens") == 50 and "max_completion_tokens" not in body
