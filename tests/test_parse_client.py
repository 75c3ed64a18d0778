"""Forgiving parsing through the client, over HTTP: records, repairs on attempts, reasks."""

from __future__ import annotations

import asyncio

from pydantic import BaseModel

from extractor import Extraction, TruncatedAnswer
from extractor.testing import Answer, ChatServer

TEXT = "Ann Lee (41) can be reached at ann@example.com."


class Contact(BaseModel):
    name: str
    email: str | None = None
    age: int | None = None


def test_a_prose_wrapped_answer_gives_the_record_and_its_repairs(make_client, server: ChatServer):
    server.script(
        Answer(
            content="Here is the JSON:\n```json\n{\n  'name': 'Ann Lee', // full name\n"
            "  'age': 41,\n}\n```\nLet me know if you need anything else!"
        )
    )
    result = make_client().extract_result(Contact, TEXT, mode="prompt")
    assert result.value == Contact(name="Ann Lee", age=41)
    [attempt] = result.attempts
    assert attempt.ok
    assert attempt.repairs == ("fence", "prose", "comment", "trailing_comma", "single_quotes")


def test_strict_json_records_no_repair(make_client, server: ChatServer):
    server.script(Answer(content='{"name": "Ann Lee"}'))
    result = make_client().extract_result(Contact, TEXT, mode="json_schema")
    assert result.attempts[0].repairs == ()


def test_repaired_tool_arguments_are_read_too(make_client, server: ChatServer):
    server.script(Answer(tool_call='{"name": "Ann Lee", "age": 41,}'))
    result = make_client().extract_result(Contact, TEXT, mode="tools")
    assert result.value == Contact(name="Ann Lee", age=41)
    assert result.attempts[0].repairs == ("trailing_comma",)


def test_an_answer_cut_off_mid_value_is_reasked_and_the_second_answer_wins(
    make_client, server: ChatServer
):
    # finish_reason "stop", yet the text ends inside the object: a server-side cut
    server.script(
        Answer(content='```json\n{"name": "Ann Lee", "email": "ann@exa'),
        Answer(content='{"name": "Ann Lee", "email": "ann@example.com"}'),
    )
    result = make_client().extract_result(Contact, TEXT, mode="prompt")
    assert result.value == Contact(name="Ann Lee", email="ann@example.com")
    first, second = result.attempts
    assert isinstance(first.error, TruncatedAnswer)
    assert "ends inside an unfinished string" in str(first.error)
    assert first.raw == '```json\n{"name": "Ann Lee", "email": "ann@exa'
    assert second.ok and second.repairs == ()
    reask = server.requests[1].messages[-1]
    assert reask["role"] == "user"
    assert "stopped before the JSON was complete: it ends inside" in reask["content"]
    assert [m["role"] for m in server.requests[1].messages] == ["system", "user", "user"]


def test_the_first_object_the_schema_accepts_wins(make_client, server: ChatServer):
    server.script(
        Answer(
            content='The schema asks for {"name": ..., "age": ...} objects, so: '
            '{"email": "ann@example.com", "age": "forty-one"} no wait: '
            '{"name": "Ann Lee", "age": 41} and {"name": "Bob"}'
        )
    )
    contact = make_client().extract(Contact, TEXT, mode="prompt")
    assert contact == Contact(name="Ann Lee", age=41)


def test_when_no_candidate_validates_the_reask_names_the_best_one_s_errors(
    make_client, server: ChatServer
):
    server.script(
        Answer(content='Note {"x": 1}. Answer: {"name": "Ann Lee", "age": "forty-one", "e": 1}'),
        Answer(content='{"name": "Ann Lee", "age": 41}'),
    )
    result = make_client().extract_result(Contact, TEXT, mode="prompt")
    assert result.value == Contact(name="Ann Lee", age=41)
    reask = server.requests[1].messages[-1]["content"]
    assert "age" in reask and "x" not in reask.split("\n", 1)[1]


def test_the_async_driver_reads_answers_the_same_way(make_client, server: ChatServer):
    server.script(Answer(content="<think>Ann, 41.</think>\n{'name': 'Ann Lee', 'age': 41}"))

    async def main() -> Extraction[Contact]:
        async with make_client() as client:  # closes its async pool on the loop it ran on
            return await client.aextract_result(Contact, TEXT, mode="json_object")

    result = asyncio.run(main())
    assert result.value == Contact(name="Ann Lee", age=41)
    assert result.attempts[0].repairs == ("think", "single_quotes")
