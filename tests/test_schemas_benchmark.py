"""The schema benchmark (benchmarks/schemas.py), small: ten corpus files, no grammar or pydantic-ai.

Its core function classifies each schema in every dialect and in `auto`; on this slice the
counts must add up to the slice in every row, and extractor must neither crash nor send a
schema its provider's documented rules refuse. RESULTS.md is left alone.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "benchmarks"
#: Every 15th file of the corpus as it stood with 155 files: drafts 04 to 2020-12, wrapped
#: roots, recursion, boolean schemas, OpenAPI and vendor keywords. Named, so that files added
#: to the corpus later leave the slice as it is.
SLICE = (
    "asyncapi-2.6.0.json",
    "geojson-LineString.json",
    "github-rest-milestone.json",
    "iglu-snowplow-ip_lookups-2-0-0.json",
    "json-schema-test-suite-ref-to-boolean-true.json",
    "jupyterlab-debugger-main.json",
    "mcp-tool-describe_image-input.json",
    "oas-example-3.0-readme-legacy.json",
    "openapi-v3.0-document.json",
    "schemastore-dotnet-global.json",
)


def _load_benchmark() -> ModuleType:
    """Import benchmarks/schemas.py under its own name (``schemas`` is the sample package),
    with benchmarks/ on the path for the ``results`` module it shares with the others."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        spec = importlib.util.spec_from_file_location(
            "schemas_benchmark", BENCHMARKS / "schemas.py"
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCHMARKS))
    return module


bench = _load_benchmark()


@pytest.fixture(scope="module")
def report() -> Any:
    corpus = dict(bench.load_corpus(bench.CORPUS))
    missing = [name for name in SLICE if name not in corpus]
    assert not missing, f"no longer in the corpus: {missing}"
    chosen = [(name, corpus[name]) for name in SLICE]
    return bench.measure(chosen, pydantic_ai=False, grammar_limit=0, repeats=1)


def test_every_row_accounts_for_every_schema(report: Any) -> None:
    assert report.rows() == list(bench.ROWS)
    for row in bench.ROWS:
        counts = report.counts(row)
        assert set(counts) <= set(bench.OUTCOMES), row
        assert sum(counts.values()) == len(SLICE), (row, counts)
    assert len(report.timings["compile"]) == len(SLICE), "every compile is timed"


def test_extractor_neither_crashes_nor_sends_an_invalid_schema(report: Any) -> None:
    found = report.problems("crashed", "invalid")
    assert not found, "\n".join(f"{o.name} [{o.row}] {o.outcome}: {o.detail}" for o in found)


def test_the_section_renders(report: Any) -> None:
    body = bench.report_body(report, "slice", None)
    assert "| extractor `openai-strict` |" in body
    assert "pydantic-ai not measured" in body
