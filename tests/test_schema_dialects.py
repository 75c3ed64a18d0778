"""JSON Schemas as people write them, to each provider in a form it takes (issue 13).

Dict targets of every draft: definitions under `definitions` or `$defs`, `$ref`s to any
pointer in the document, Draft-04 and OpenAPI spellings, `allOf`, untyped values. Each
reaches the wire with every reference resolving; what strict mode cannot say goes as
non-strict `json_schema` in `auto`, before the first request, never by a 400.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from extractor import Client, InvalidAnswer, SchemaError, compile_schema
from extractor._cli import load_target
from extractor.testing import Answer, ChatServer, Fault, RecordedRequest


def refs_resolve(schema: Any, root: Any = None) -> list[str]:
    """The `$ref`s of a wire schema that point nowhere in it."""
    root = schema if root is None else root
    dangling = []
    if isinstance(schema, dict):
        for key, value in schema.items():
            if key == "$ref":
                node = root
                for part in value.removeprefix("#").strip("/").split("/") if value != "#" else []:
                    node = node.get(part) if isinstance(node, dict) else None
                if node is None:
                    dangling.append(value)
            else:
                dangling += refs_resolve(value, root)
    elif isinstance(schema, list):
        for value in schema:
            dangling += refs_resolve(value, root)
    return dangling


DRAFT_04 = {
    "$schema": "http://json-schema.org/draft-04/schema#",
    "title": "Order",
    "type": "object",
    "properties": {
        "customer": {"$ref": "#/definitions/Party"},
        "lines": {"type": "array", "items": {"$ref": "#/definitions/Line"}},
        "first_line": {"$ref": "#/properties/lines/items"},
        "note": {"type": "string", "nullable": True, "x-internal": True},
    },
    "required": ["customer", "lines"],
    "definitions": {
        "Party": {"type": "object", "properties": {"name": {"type": "string"}}},
        "Line": {
            "type": "object",
            "properties": {"qty": {"type": "integer", "minimum": 0, "exclusiveMinimum": True}},
            "required": ["qty"],
        },
    },
}


@pytest.mark.parametrize("dialect", ["openai-strict", "openai", "mistral", "plain"])
def test_a_draft_04_schema_reaches_every_dialect_with_its_references_whole(dialect: str) -> None:
    wire = compile_schema(DRAFT_04).dialect(dialect)
    assert refs_resolve(wire) == []
    assert "definitions" not in json.dumps(wire)
    assert "x-internal" not in json.dumps(wire) or dialect == "plain"


def test_the_answer_is_held_to_the_schemas_own_draft() -> None:
    compiled = compile_schema(DRAFT_04)
    assert compiled.load({"customer": {"name": "A"}, "lines": [{"qty": 1}]})
    with pytest.raises(InvalidAnswer, match="qty"):
        compiled.load({"customer": {"name": "A"}, "lines": [{"qty": 0}]})  # exclusive minimum


def test_a_recursive_root_and_a_list_root_keep_their_references_when_wrapped() -> None:
    tree = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "children": {"type": "array", "items": {"$ref": "#"}},
        },
        "required": ["name", "children"],
        "additionalProperties": False,
    }
    wire = compile_schema(tree).dialect("openai-strict")
    assert refs_resolve(wire) == []
    listed = {
        "type": "array",
        "items": {"$ref": "#/$defs/P"},
        "$defs": {"P": DRAFT_04["definitions"]["Party"]},
    }
    wire = compile_schema(listed).dialect("openai-strict")
    assert refs_resolve(wire) == [] and wire["properties"]["items"]["type"] == "array"


def test_all_of_and_a_ref_with_constraints_beside_it_are_merged_for_strict() -> None:
    schema = {
        "type": "object",
        "properties": {
            "who": {
                "allOf": [
                    {"$ref": "#/$defs/Named"},
                    {"type": "object", "properties": {"age": {"type": "integer"}}},
                ]
            },
            "code": {"$ref": "#/$defs/Code", "maxLength": 4},
        },
        "$defs": {
            "Named": {"type": "object", "properties": {"name": {"type": "string"}}},
            "Code": {"type": "string", "maxLength": 8, "pattern": "^[A-Z]+$"},
        },
    }
    wire = compile_schema(schema).dialect("openai-strict")
    who = wire["properties"]["who"]
    assert set(who["properties"]) == {"name", "age"} and who["additionalProperties"] is False
    assert wire["properties"]["code"]["pattern"] == "^[A-Z]+$"


def test_a_type_array_becomes_a_union_in_strict() -> None:
    schema = {
        "type": "object",
        "properties": {"v": {"type": ["string", "integer"], "maxLength": 3}},
    }
    v = compile_schema(schema).dialect("openai-strict")["properties"]["v"]
    kinds = [b.get("type") for b in v["anyOf"]]
    assert "string" in kinds and "integer" in kinds and {"type": "null"} in v["anyOf"]


def test_a_reference_out_of_the_document_is_refused_with_its_path() -> None:
    schema = {"type": "object", "properties": {"a": {"$ref": "other.json#/definitions/A"}}}
    with pytest.raises(SchemaError, match="points to another document") as caught:
        compile_schema(schema)
    assert caught.value.path == "a"


def write_json(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def test_documents_a_schema_file_refers_to_are_read_from_beside_it(tmp_path: Path) -> None:
    order = write_json(
        tmp_path / "order.json",
        {
            "type": "object",
            "properties": {
                "ship_to": {"$ref": "common/address.json"},
                "note": {"$ref": "common/address.json#/definitions/line"},
            },
            "required": ["ship_to"],
        },
    )
    write_json(
        tmp_path / "common" / "address.json",
        {
            "$schema": "http://json-schema.org/draft-07/schema#",
            "definitions": {"line": {"type": "string", "maxLength": 80}},
            "type": "object",
            "properties": {
                "street": {"$ref": "#/definitions/line"},
                "country": {"$ref": "country.schema.json"},  # relative to address.json
            },
            "required": ["street", "country"],
        },
    )
    write_json(tmp_path / "common" / "country.schema.json", {"enum": ["NL", "DE"]})
    compiled = compile_schema(load_target(str(order)))
    defs = compiled.schema["$defs"]
    assert set(defs) == {"address", "line", "country"}  # each once, by its file's name
    assert compiled.schema["properties"]["ship_to"] == {"$ref": "#/$defs/address"}
    assert compiled.load({"ship_to": {"street": "Main St 1", "country": "NL"}})
    with pytest.raises(InvalidAnswer, match="country"):
        compiled.load({"ship_to": {"street": "Main St 1", "country": "FR"}})
    assert str(tmp_path) not in json.dumps(compiled.dialect("openai-strict"))  # no local path


def test_a_schema_with_an_id_finds_its_siblings_by_that_id(tmp_path: Path) -> None:
    # published at https://example.com/schemas/, its documents sit side by side
    bom = write_json(
        tmp_path / "bom.schema.json",
        {
            "$id": "https://example.com/schemas/bom.schema.json",
            "type": "object",
            "properties": {"license": {"$ref": "spdx.schema.json"}},
        },
    )
    write_json(tmp_path / "spdx.schema.json", {"$id": "x", "enum": ["MIT", "Apache-2.0"]})
    compiled = compile_schema(load_target(str(bom)))
    assert compiled.load({"license": "MIT"})
    with pytest.raises(InvalidAnswer):
        compiled.load({"license": "GPL"})


def test_a_referenced_document_that_is_not_there_is_refused_naming_the_field(
    tmp_path: Path,
) -> None:
    lonely = write_json(
        tmp_path / "lonely.json",
        {"type": "object", "properties": {"a": {"$ref": "https://elsewhere.example/x.json"}}},
    )
    with pytest.raises(SchemaError, match="put it beside the schema file") as caught:
        compile_schema(load_target(str(lonely)))
    assert caught.value.path == "a"


def test_resources_bundled_under_their_own_ids_resolve_as_the_drafts_say() -> None:
    # two resources in one document, referring to each other by relative URI
    schema = {
        "$id": "https://example.com/tree",
        "type": "object",
        "properties": {"nodes": {"type": "array", "items": {"$ref": "node"}}},
        "required": ["nodes"],
        "definitions": {
            "node": {
                "$id": "https://example.com/node",
                "type": "object",
                "properties": {"value": {"type": "number"}, "subtree": {"$ref": "tree"}},
                "required": ["value"],
            }
        },
    }
    compiled = compile_schema(schema)
    for dialect in ("openai-strict", "openai", "mistral", "plain"):
        refs = re.findall(r'"\$ref": "([^"]*)"', json.dumps(compiled.dialect(dialect)))
        assert refs and all(ref.startswith("#/$defs/") for ref in refs)  # all local now
    tree = {"nodes": [{"value": 1, "subtree": {"nodes": [{"value": 2}]}}]}
    assert compiled.load(tree) == tree
    with pytest.raises(InvalidAnswer):
        compiled.load({"nodes": [{"value": 1, "subtree": {"nodes": [{"value": "two"}]}}]})


def test_a_reference_to_a_metaschema_is_read_from_the_bundled_copy() -> None:
    schema = {
        "type": "object",
        "properties": {
            "title": {"$ref": "http://json-schema.org/draft-04/schema#/properties/title"}
        },
        "required": ["title"],
    }
    compiled = compile_schema(schema)
    plain = compiled.dialect("plain")
    assert plain["properties"]["title"] == {"$ref": "#/$defs/properties_title"}
    assert plain["$defs"]["properties_title"] == {"type": "string"}
    with pytest.raises(InvalidAnswer):
        compiled.load({"title": 7})


def test_ecma_named_groups_are_read_and_an_unreadable_pattern_is_left_out_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    schema = {
        "type": "object",
        "properties": {
            "version": {"type": "string", "pattern": "^(?<major>\\d+)\\.(?<minor>\\d+)$"},
            "word": {"type": "string", "pattern": "^\\p{L}+$"},
        },
        "required": ["version", "word"],
    }
    with caplog.at_level("WARNING", logger="extractor"):
        compiled = compile_schema(schema)
    sent = compiled.dialect("openai")["properties"]
    assert sent["version"]["pattern"] == "^(?P<major>\\d+)\\.(?P<minor>\\d+)$"
    assert "pattern" not in sent["word"]
    assert any("left out" in r.getMessage() and "p{L}" in r.getMessage() for r in caplog.records)
    assert compiled.load({"version": "1.2", "word": "x"}) == {"version": "1.2", "word": "x"}
    with pytest.raises(InvalidAnswer):
        compiled.load({"version": "1.x", "word": "x"})


def test_non_array_examples_are_made_2020_12() -> None:
    # Draft-04 has no `examples` keyword, so any value passes its check; 2020-12 wants a list
    schema = {"type": "object", "properties": {"v": {"type": "string", "examples": "3.15"}}}
    v = compile_schema(schema).dialect("plain")["properties"]["v"]
    assert v == {"type": "string", "examples": ["3.15"]}


UNTYPED = {
    "title": "Event",
    "type": "object",
    "properties": {"name": {"type": "string"}, "payload": {"description": "anything at all"}},
    "required": ["name", "payload"],
}
OPEN = {
    "title": "Tags",
    "type": "object",
    "properties": {"labels": {"type": "object", "additionalProperties": {"type": "string"}}},
    "required": ["labels"],
}


@pytest.mark.parametrize(("schema", "path"), [(UNTYPED, "payload"), (OPEN, "labels")])
def test_strict_says_where_it_cannot_follow(schema: dict[str, Any], path: str) -> None:
    with pytest.raises(SchemaError) as caught:
        compile_schema(schema).dialect("openai-strict")
    assert caught.value.path == path


@pytest.mark.parametrize(
    ("schema", "record"),
    [(UNTYPED, {"name": "a", "payload": [1, {"x": None}]}), (OPEN, {"labels": {"k": "v"}})],
)
def test_auto_sends_what_strict_cannot_say_as_non_strict_json_schema_first(
    server: ChatServer, schema: dict[str, Any], record: dict[str, Any]
) -> None:
    server.script(Answer(content=json.dumps(record)))
    with Client("openai/m", base_url=server.base_url, api_key="sk-x") as client:
        assert client.extract(schema, "doc") == record
    [request] = server.requests  # no 400 paid for it
    spec = request.response_format["json_schema"]
    assert "strict" not in spec
    assert refs_resolve(spec["schema"]) == []


def test_an_explicit_strict_mode_is_told_what_would_work(server: ChatServer) -> None:
    with Client("openai/m", base_url=server.base_url, api_key="sk-x", mode="json_schema") as client:
        with pytest.raises(SchemaError, match=r"mode='auto'") as caught:
            client.extract(UNTYPED, "doc")
        assert caught.value.path == "payload"
        assert server.requests == []
        # the modes whose schema rides in the prompt take it as it is
        server.script(Answer(content='{"name": "a", "payload": 1}'))
        assert client.extract(UNTYPED, "doc", mode="prompt")["payload"] == 1


def _first_mode(request: RecordedRequest) -> str:
    if request.tools:
        return "tools"
    return (request.response_format or {}).get("type", "prompt")


def test_a_refusal_of_one_document_does_not_demote_the_mode_for_the_next(
    server: ChatServer,
) -> None:
    filtered = {"error": {"message": "The content was flagged by the safety system"}}
    server.script(
        Fault(400, body=filtered),  # this document only: its content
        Answer(tool_call='{"name": "a"}'),  # the same call, one mode down
        Answer(content='{"name": "b"}'),  # the next document: json_schema again
    )
    schema = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
    with Client("openai/m-memory-1", base_url=server.base_url, api_key="sk-x") as client:
        assert client.extract(schema, "first") == {"name": "a"}
        assert client.extract(schema, "second") == {"name": "b"}
    assert [_first_mode(r) for r in server.requests] == ["json_schema", "tools", "json_schema"]


def test_a_refusal_of_the_mode_itself_is_remembered(server: ChatServer) -> None:
    refused = {"error": {"message": "Invalid schema for response_format 'x': not supported"}}
    server.script(
        Fault(400, body=refused),
        Answer(tool_call='{"name": "a"}'),
        Answer(tool_call='{"name": "b"}'),
    )
    schema = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
    with Client("openai/m-memory-2", base_url=server.base_url, api_key="sk-x") as client:
        client.extract(schema, "first")
        client.extract(schema, "second")
    assert [_first_mode(r) for r in server.requests] == ["json_schema", "tools", "tools"]


def test_the_schema_command_says_what_each_dialect_carries(tmp_path: Any) -> None:
    import subprocess
    import sys

    path = tmp_path / "event.json"
    path.write_text(
        json.dumps(
            {
                **UNTYPED,
                "properties": {**UNTYPED["properties"], "tag": {"type": "string", "x-ui": "wide"}},
            }
        )
    )
    run = subprocess.run(
        [sys.executable, "-m", "extractor", "schema", str(path), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    lines = dict(line.split(": ", 1) for line in run.stdout.splitlines())
    assert lines["openai-strict"].startswith("cannot carry it: field 'payload'")
    assert lines["openai"] == "ok; leaves out (still checked): tag: x-ui"
    assert lines["plain"] == "ok"
