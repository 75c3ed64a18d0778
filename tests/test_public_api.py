"""The public face: one sorted `__all__`, everything in it importable, types shipped."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import pytest

import extractor


def test_all_is_sorted_and_complete():
    assert extractor.__all__ == sorted(extractor.__all__, key=lambda n: (not n.isupper(), n))
    for name in extractor.__all__:
        assert hasattr(extractor, name), name


def test_errors_share_one_root():
    for name in extractor.__all__:
        value = getattr(extractor, name)
        if isinstance(value, type) and issubclass(value, Exception):
            assert issubclass(value, extractor.ExtractorError), name


def test_package_ships_type_information():
    assert (Path(extractor.__file__).parent / "py.typed").exists()


# Every public name, by module: adding one is a decision, so it is written down here.
PUBLIC = {
    "extractor": {
        *("DIALECTS", "MODES", "PROVIDERS", "APIConnectionError", "APIError"),
        *("APIStatusError", "APITimeoutError", "AsyncExtractionStream", "Attempt"),
        *("AttemptError", "Client", "CompiledSchema", "ConfigurationError", "DatasetError"),
        *("ErrorDetail", "Extractable", "Extraction", "ExtractionStream", "ExtractorError"),
        *("InputError", "InvalidAnswer", "MalformedResponse", "Mode", "Options"),
        *("DocumentTooLong", "ParameterError"),
        *("Refusal", "RetriesExhausted", "ChunkError", "LongExtraction", "Merge"),
        *("MergeError", "ResponseCache", "aextract_long", "extract_long"),
        *("RetryPolicy", "SchemaError", "TruncatedAnswer", "Usage", "UsageError"),
        *("WorkedExample", "__version__", "aextract", "aextract_stream", "compile_schema"),
        *("default_client", "extract", "extract_stream", "extractable", "worked_examples"),
    },
    "extractor.testing": {
        *("Answer", "ChatServer", "Delay", "Drip", "Drop", "Echo", "Fault", "Heartbeat"),
        *("Item", "Raw", "RecordedRequest", "ScriptedBackend", "Stream", "Truncated"),
        *("BatchOutcome", "BatchSubmission"),
    },
    "extractor.batch": {
        *("BatchJob", "BatchResult", "Document", "DocumentError", "Limiter", "Source"),
        *("SourceError", "Store", "StoreError", "Summary", "failures_path", "open_source"),
    },
    "extractor.backend": {"Answer", "Backend", "Budget", "Paced", "Pacer", "Request", "Retrying"}
    | {"StreamItem"},
    "extractor.documents": {"KINDS", "MAX_DOCUMENT_BYTES", "Document", "Source", "detect", "read"},
    "extractor.events": {
        *("Answered", "Event", "Failed", "Finished", "Hook", "Retrying", "Sending"),
        *("Started", "subscribe", "unsubscribe"),
    },
    "extractor.dataframes": {"aextract", "extract"},
    "extractor.ray": {"Extract", "extract", "rate_limit"},
}


@pytest.mark.parametrize("module", sorted(PUBLIC))
def test_the_public_names_are_exactly_these(module: str) -> None:
    imported = importlib.import_module(module)
    assert set(imported.__all__) == PUBLIC[module]
    for name in imported.__all__:
        assert hasattr(imported, name), name


def test_every_public_class_and_function_has_a_docstring() -> None:
    missing = []
    for module, names in PUBLIC.items():
        imported = importlib.import_module(module)
        for name in names:
            value = getattr(imported, name)
            if (inspect.isclass(value) or inspect.isfunction(value)) and not value.__doc__:
                missing.append(f"{module}.{name}")
    assert missing == []
