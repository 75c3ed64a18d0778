"""Worked examples: a document with its record, checked at import, shown before the document."""

from __future__ import annotations

import json

import pytest
from pydantic import BaseModel, Field

from extractor import SchemaError, WorkedExample, compile_schema, worked_examples
from extractor.testing import Answer, ChatServer

NOTE = "From: Bo Chan <bo@example.org>\nSee you Tuesday."


@worked_examples(
    WorkedExample(
        "Regards,\nAnn Lee\nann@example.com", {"name": "Ann Lee", "email": "ann@example.com"}
    ),
    WorkedExample("-- Raj (raj@example.net)", {"name": "Raj", "email": "raj@example.net"}),
)
class Sender(BaseModel):
    name: str = Field(description="The sender's name")
    email: str | None = None


def test_a_record_that_does_not_validate_fails_at_decoration_and_names_the_field():
    with pytest.raises(SchemaError, match=r"worked example 1 for Broken does not validate.*age"):

        @worked_examples(
            WorkedExample("Ann, 41", {"age": 41}),
            WorkedExample("Bo, forty", {"age": "forty"}),
        )
        class Broken(BaseModel):
            age: int


def test_an_example_without_a_document_is_refused():
    with pytest.raises(SchemaError, match="worked example 0 must be a WorkedExample with a text"):

        @worked_examples(WorkedExample("  ", {"name": "Ann"}))
        class Blank(BaseModel):
            name: str


def test_the_compiled_schema_carries_the_examples_as_wire_records_in_order():
    examples = compile_schema(Sender).examples
    assert [text for text, _ in examples] == [
        "Regards,\nAnn Lee\nann@example.com",
        "-- Raj (raj@example.net)",
    ]
    assert examples[0][1] == {"name": "Ann Lee", "email": "ann@example.com"}

    class Subclass(Sender):  # examples belong to the decorated class, not to subclasses
        phone: str

    assert compile_schema(Subclass).examples == ()


@pytest.mark.parametrize("mode", ["json_schema", "tools", "json_object", "prompt"])
def test_remote_models_see_each_example_as_a_question_and_its_answer(
    make_client, server: ChatServer, mode: str
):
    answer = '{"name": "Bo Chan", "email": "bo@example.org"}'
    if mode == "tools":
        server.script(Answer(tool_call=answer))
    else:
        server.script(Answer(content=answer))
    assert make_client().extract(Sender, NOTE, mode=mode) == Sender(
        name="Bo Chan", email="bo@example.org"
    )
    system, *shown, last = server.requests[0].messages
    assert system["role"] == "system"
    assert [m["role"] for m in shown] == ["user", "assistant", "user", "assistant"]
    assert shown[0]["content"] == "Regards,\nAnn Lee\nann@example.com"
    assert json.loads(shown[1]["content"]) == {"name": "Ann Lee", "email": "ann@example.com"}
    assert shown[3]["content"] == '{"name": "Raj", "email": "raj@example.net"}'
    assert last == {"role": "user", "content": NOTE}  # the document comes last, as before


def test_examples_given_per_call_replace_the_class_examples_and_work_for_any_target(
    make_client, server: ChatServer
):
    server.handler = lambda request: Answer(content='{"items": [{"name": "Bo Chan"}]}')
    own = [WorkedExample("Cc: Dee, Eve", [{"name": "Dee"}, {"name": "Eve"}])]
    people = make_client().extract(list[Sender], NOTE, mode="json_schema", examples=own)
    assert people == [Sender(name="Bo Chan")]
    _, example, answer, document = server.requests[0].messages
    assert example == {"role": "user", "content": "Cc: Dee, Eve"}
    # the record goes out as the wire shape: a list target is wrapped in {"items": ...}
    assert json.loads(answer["content"]) == {
        "items": [{"name": "Dee", "email": None}, {"name": "Eve", "email": None}]
    }
    assert document["content"] == NOTE

    # an empty list turns the class's own examples off for this call
    server.handler = lambda request: Answer(content='{"name": "Bo Chan"}')
    make_client().extract(Sender, NOTE, mode="json_schema", examples=[])
    assert [m["role"] for m in server.requests[-1].messages] == ["system", "user"]


def test_a_per_call_example_that_does_not_fit_is_refused_before_any_request(
    make_client, server: ChatServer
):
    with pytest.raises(SchemaError, match=r"worked example 0 for Sender does not validate.*name"):
        make_client().extract(Sender, NOTE, examples=[WorkedExample("x", {"email": "a@b.c"})])
    assert server.requests == []


def test_fields_with_aliases_are_shown_and_stored_by_the_names_the_schema_asks_for(
    tmp_path,
):
    @worked_examples(WorkedExample("Total due: 3.50", {"Total": 3.5}))
    class Bill(BaseModel):
        total_amount: float = Field(alias="Total")

    compiled = compile_schema(Bill)
    assert list(compiled.schema["properties"]) == ["Total"]
    assert compiled.examples[0][1] == {"Total": 3.5}  # the key the model must answer with
    record = compiled.load({"Total": 7.25})
    assert compiled.dump(record) == {"Total": 7.25}
    assert compiled.load(compiled.dump(record)) == record  # a stored record validates again
