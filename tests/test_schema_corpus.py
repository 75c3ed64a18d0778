"""The real-world schema corpus (`tests/data/schemas`) and generated schemas, through the compiler.

The corpus holds JSON Schemas from public sources as their sources wrote them; its
`MANIFEST.json` gives each file's source, licence, draft and what it exercises. These tests
keep the manifest and the folder in step, hold every file to its draft's meta-schema, hold
`tests/schema_strategies.py` to the same standard (its schemas are valid for their draft,
its instances valid for their schema), and run every schema, real or generated, through
`compile_schema` and each dialect: the outcome is a dict or a `SchemaError`, never another
exception.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import validators

import extractor
from tests.schema_strategies import DRAFTS, META, instances, schemas

CORPUS = Path(__file__).parent / "data" / "schemas"
MANIFEST = json.loads((CORPUS / "MANIFEST.json").read_text(encoding="utf-8"))
ENTRIES = {entry["file"]: entry for entry in MANIFEST["schemas"]}

VALIDATORS: dict[str, type[Any]] = {
    "draft-04": jsonschema.Draft4Validator,
    "draft-06": jsonschema.Draft6Validator,
    "draft-07": jsonschema.Draft7Validator,
    "2019-09": jsonschema.Draft201909Validator,
    "2020-12": jsonschema.Draft202012Validator,
}
#: Licences that allow redistribution; a file under any other does not belong here.
LICENCES = frozenset({"MIT", "Apache-2.0", "BSD-2-Clause", "BSD-3-Clause", "CC0-1.0", "CC-BY-4.0"})
#: The $schema values that name a draft: a file that carries one is checked against that draft.
DRAFT_URIS = {
    "http://json-schema.org/draft-04/schema": "draft-04",
    "http://json-schema.org/draft-06/schema": "draft-06",
    "http://json-schema.org/draft-07/schema": "draft-07",
    "https://json-schema.org/draft/2019-09/schema": "2019-09",
    "https://json-schema.org/draft/2020-12/schema": "2020-12",
}
MAX_CORPUS_BYTES = 5 * 1024 * 1024

GENERATED = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def load(name: str) -> Any:
    return json.loads((CORPUS / name).read_text(encoding="utf-8"))


def compile_every_dialect(schema: Any) -> list[str]:
    """Compile and build each dialect; return what happened to each (a dict, or refused)."""
    try:
        compiled = extractor.compile_schema(schema)
    except extractor.SchemaError:
        return ["refused"]
    outcomes = []
    for name in extractor.DIALECTS:
        try:
            dialect = compiled.dialect(name)
        except extractor.SchemaError:
            outcomes.append(f"{name}: refused")
        else:
            assert isinstance(dialect, dict), f"{name} gave {type(dialect).__name__}"
            outcomes.append(f"{name}: ok")
    return outcomes


# --- the corpus and its manifest ------------------------------------------------------------


def test_manifest_lists_exactly_the_files_in_the_folder() -> None:
    files = {p.name for p in CORPUS.glob("*.json")} - {"MANIFEST.json"}
    listed = [entry["file"] for entry in MANIFEST["schemas"]]
    assert len(listed) == len(set(listed)), "a file is listed twice"
    assert files - set(listed) == set(), "files without a manifest entry"
    assert set(listed) - files == set(), "manifest entries without a file"
    assert len(files) >= 150


def test_every_entry_names_its_source_licence_draft_and_purpose() -> None:
    for name, entry in ENTRIES.items():
        source = entry["source"]
        assert ("repo" in source and "commit" in source) or (
            "registry" in source and "version" in source
        ), name
        assert source["path"], name
        assert entry["licence"] in LICENCES, f"{name}: {entry['licence']}"
        assert entry["draft"] in VALIDATORS, name
        assert entry["note"].strip(), name


def test_the_corpus_stays_small() -> None:
    size = sum(p.stat().st_size for p in CORPUS.iterdir())
    assert size < MAX_CORPUS_BYTES, f"{size} bytes"


@pytest.mark.parametrize("name", sorted(ENTRIES))
def test_corpus_file_is_a_valid_schema_of_its_draft(name: str) -> None:
    entry = ENTRIES[name]
    schema = load(name)
    cls = VALIDATORS[entry["draft"]]
    declared = schema.get("$schema", "") if isinstance(schema, dict) else ""
    if declared.rstrip("#") in DRAFT_URIS:
        assert DRAFT_URIS[declared.rstrip("#")] == entry["draft"], (
            "manifest draft and $schema differ"
        )
    if entry.get("python_regex", True):
        cls.check_schema(schema)
        return
    # valid for its draft, but a pattern is ECMA-262 or PCRE that Python's `re` cannot read
    assert not list(cls(cls.META_SCHEMA).iter_errors(schema))
    checked = cls(cls.META_SCHEMA, format_checker=cls.FORMAT_CHECKER)
    errors = list(checked.iter_errors(schema))
    assert errors, "python_regex is false, yet every pattern compiles in Python"
    assert {(e.validator, e.validator_value) for e in errors} == {("format", "regex")}


# --- the generator --------------------------------------------------------------------------


@GENERATED
@given(schemas())
def test_generated_schemas_are_valid_for_their_draft(schema: dict[str, Any]) -> None:
    cls = validators.validator_for(schema)
    assert schema["$schema"] in META.values()
    assert cls is VALIDATORS[DRAFTS[list(META.values()).index(schema["$schema"])]]
    cls.check_schema(schema)


@GENERATED
@given(st.data())
def test_generated_instances_are_valid_for_their_schema(data: st.DataObject) -> None:
    schema = data.draw(schemas())
    value = data.draw(instances(schema))
    cls = validators.validator_for(schema)
    errors = list(cls(schema, format_checker=cls.FORMAT_CHECKER).iter_errors(value))
    assert not errors, [e.message for e in errors[:3]]


# --- through the compiler -------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(ENTRIES))
def test_corpus_schema_compiles_or_is_refused(name: str) -> None:
    assert compile_every_dialect(load(name))


@GENERATED
@given(schemas())
def test_generated_schema_compiles_or_is_refused(schema: dict[str, Any]) -> None:
    assert compile_every_dialect(schema)
