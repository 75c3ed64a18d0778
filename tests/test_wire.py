"""What goes on the wire: every parameter, in each provider's own names and shapes."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from extractor import ParameterError, SchemaError
from extractor.testing import Answer, ChatServer
from tests.wire import check_mistral_body, check_openai_body

TEXT = "Ann Lee"
MODES = ["json_schema", "tools", "json_object", "prompt"]
ALL_PARAMS = {
    "frequency_penalty": 0.5,
    "presence_penalty": -0.5,
    "max_completion_tokens": 300,
    "seed": 7,
    "stop": ["\n\n", "END"],
    "temperature": 0.2,
    "top_p": 0.9,
}


class Person(BaseModel):
    name: str
    nickname: str | None = None


def ok(request) -> Answer:
    if request.tools:
        return Answer(tool_call={"name": "Ann"})
    return Answer(content='{"name": "Ann"}')


@pytest.mark.parametrize("provider", ["openai", "openrouter"])
@pytest.mark.parametrize("mode", MODES)
def test_every_parameter_is_sent_under_its_openai_name(make_client, server, provider, mode):
    server.handler = ok
    make_client(provider).extract(Person, TEXT, mode=mode, **ALL_PARAMS)
    body = server.requests[0].body
    for name, value in ALL_PARAMS.items():
        assert body[name] == value
    assert "max_tokens" not in body
    # the fixture checks the body against CreateChatCompletionRequest at teardown


def test_openrouter_asks_for_providers_that_honour_the_schema(make_client, server):
    server.handler = ok
    client = make_client("openrouter")
    client.extract(Person, TEXT, mode="json_schema")
    client.extract(Person, TEXT, mode="tools")
    client.extract(Person, TEXT, mode="json_schema", structured_outputs=False)
    client.extract(Person, TEXT, mode="prompt")
    provider = [r.body.get("provider") for r in server.requests]
    assert provider == [{"require_parameters": True}] * 2 + [None, None]


def test_structured_outputs_is_never_a_body_field(make_client, server):
    server.handler = ok
    make_client("openai").extract(Person, TEXT, mode="json_schema", structured_outputs=True)
    assert "structured_outputs" not in server.requests[0].body


@pytest.mark.parametrize("mode", MODES)
def test_mistral_gets_its_own_names_and_nothing_it_rejects(make_client, server, mode):
    server.handler = ok
    make_client("mistral").extract(Person, TEXT, mode=mode, **ALL_PARAMS)
    body = server.requests[0].body
    assert body["random_seed"] == 7 and "seed" not in body
    assert body["max_tokens"] == 300 and "max_completion_tokens" not in body
    if mode == "tools":
        assert body["tool_choice"] == "any"
        assert "strict" not in body["tools"][0]["function"]
    # the fixture checks every body against Mistral's accepted fields at teardown


@pytest.mark.parametrize(
    ("provider", "check"),
    [
        ("openai", check_openai_body),
        ("openrouter", check_openai_body),
        ("mistral", check_mistral_body),
    ],
)
def test_tools_mode_reask_is_accepted_by_each_dialect(make_client, server, provider, check):
    server.script(Answer(tool_call={"nick": 1}), Answer(tool_call={"name": "Ann"}))
    make_client(provider).extract(Person, TEXT, mode="tools")
    reask = server.requests[1].body
    assert [m["role"] for m in reask["messages"]][-2:] == ["assistant", "tool"]
    check(reask)


def test_openai_tools_mode_forces_the_named_function(make_client, server):
    server.handler = ok
    make_client().extract(Person, TEXT, mode="tools")
    body = server.requests[0].body
    assert body["tool_choice"] == {"type": "function", "function": {"name": "Person"}}
    assert body["tools"][-1]["function"]["strict"] is True
    schema = body["tools"][-1]["function"]["parameters"]
    assert schema["required"] == ["name", "nickname"]  # strict: every property required


def test_user_tools_and_tool_choice_are_passed_along(make_client, server):
    server.handler = ok
    lookup = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}
    make_client().extract(Person, TEXT, mode="tools", tools=[lookup], tool_choice="required")
    body = server.requests[0].body
    assert [t["function"]["name"] for t in body["tools"]] == ["lookup", "Person"]
    assert body["tool_choice"] == "required"


def test_response_format_given_by_the_user_wins(make_client, server):
    server.handler = ok
    make_client().extract(Person, TEXT, mode="prompt", response_format={"type": "json_object"})
    assert server.requests[0].response_format == {"type": "json_object"}


@pytest.mark.parametrize("mode", ["json_schema", "json_object"])
def test_a_response_format_that_would_drop_the_schema_is_refused_before_sending(
    make_client, server, mode
):
    server.handler = ok
    with pytest.raises(ParameterError, match=f"mode {mode} sends its own"):
        make_client().extract(Person, TEXT, mode=mode, response_format={"type": "text"})
    assert not server.requests


def test_max_tokens_is_a_deprecated_alias(make_client, server):
    server.handler = ok
    with pytest.warns(DeprecationWarning, match="max_completion_tokens"):
        make_client().extract(Person, TEXT, mode="json_schema", max_tokens=50)
    assert server.requests[0].body["max_completion_tokens"] == 50


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("temperature", 2.5),
        ("temperature", -0.1),
        ("top_p", 1.5),
        ("frequency_penalty", 3),
        ("presence_penalty", -2.5),
        ("seed", 1.5),
        ("stop", ["a", "b", "c", "d", "e"]),
        ("stop", ""),
        ("max_completion_tokens", 0),
        ("structured_outputs", "yes"),
        ("temperature", "hot"),
        ("logit_bias", {}),
    ],
)
def test_bad_parameter_is_refused_before_any_request(make_client, server, name, value):
    with pytest.raises(ParameterError, match=name):
        make_client().extract(Person, TEXT, **{name: value})
    assert server.requests == []


def test_mistral_temperature_range_is_its_own(make_client, server: ChatServer):
    server.handler = ok
    make_client("openai").extract(Person, TEXT, temperature=1.8)
    with pytest.raises(ParameterError, match=r"temperature.*1\.5"):
        make_client("mistral").extract(Person, TEXT, temperature=1.8)
    assert len(server.requests) == 1


def test_inexpressible_schema_is_refused_before_any_request(make_client, server):
    class Scores(BaseModel):
        by_name: dict[str, int]

    with pytest.raises(SchemaError, match="by_name"):
        make_client("openai").extract(Scores, TEXT, mode="json_schema")
    assert server.requests == []


def test_wire_checks_can_fail():
    with pytest.raises(AssertionError):
        check_openai_body({"model": "m"})  # no messages
    with pytest.raises(AssertionError, match="seeed"):
        check_openai_body(
            {"model": "m", "messages": [{"role": "user", "content": "x"}], "seeed": 1}
        )
    with pytest.raises(AssertionError, match="seed"):
        check_mistral_body({"model": "m", "messages": [], "seed": 1})
