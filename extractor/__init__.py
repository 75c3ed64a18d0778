"""extractor: typed, validated records out of language models.

Declare a Pydantic model, call `extract`, get an instance back. The model is compiled to
a JSON Schema once, sent through an OpenAI-compatible chat-completions API in the best
mode the provider offers, and the answer is validated; invalid answers are re-asked with
their errors, transport failures retried with backoff.

    from extractor import extractable

    @extractable(model="openrouter/mistralai/mistral-large-2407")
    class Contact(BaseModel):
        name: str
        email: str | None = None

    contact = Contact.extract("Reach Ann Lee at ann@example.com")
"""

from typing import TYPE_CHECKING, Any

from extractor._api import (
    Extractable,
    aextract,
    aextract_stream,
    default_client,
    extract,
    extract_stream,
    extractable,
)
from extractor._client import Client
from extractor._errors import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    AttemptError,
    ConfigurationError,
    DatasetError,
    DocumentTooLong,
    ErrorDetail,
    ExtractorError,
    InputError,
    InvalidAnswer,
    MalformedResponse,
    ParameterError,
    Refusal,
    RetriesExhausted,
    SchemaError,
    TruncatedAnswer,
    UsageError,
)
from extractor._options import Mode, Options
from extractor._providers import MODES, PROVIDERS
from extractor._result import Attempt, Extraction, Usage
from extractor._retry import RetryPolicy
from extractor._schema import (
    DIALECTS,
    CompiledSchema,
    WorkedExample,
    compile_schema,
    worked_examples,
)

if TYPE_CHECKING:
    from extractor._cache import ResponseCache
    from extractor._long import aextract_long, extract_long
    from extractor._merge import Merge, MergeError
    from extractor._parts import ChunkError, LongExtraction
    from extractor._stream import AsyncExtractionStream, ExtractionStream

__version__ = "0.1.0"

__all__ = [
    "DIALECTS",
    "MODES",
    "PROVIDERS",
    "APIConnectionError",
    "APIError",
    "APIStatusError",
    "APITimeoutError",
    "AsyncExtractionStream",
    "Attempt",
    "AttemptError",
    "ChunkError",
    "Client",
    "CompiledSchema",
    "ConfigurationError",
    "DatasetError",
    "DocumentTooLong",
    "ErrorDetail",
    "Extractable",
    "Extraction",
    "ExtractionStream",
    "ExtractorError",
    "InputError",
    "InvalidAnswer",
    "LongExtraction",
    "MalformedResponse",
    "Merge",
    "MergeError",
    "Mode",
    "Options",
    "ParameterError",
    "Refusal",
    "ResponseCache",
    "RetriesExhausted",
    "RetryPolicy",
    "SchemaError",
    "TruncatedAnswer",
    "Usage",
    "UsageError",
    "WorkedExample",
    "__version__",
    "aextract",
    "aextract_long",
    "aextract_stream",
    "compile_schema",
    "default_client",
    "extract",
    "extract_long",
    "extract_stream",
    "extractable",
    "worked_examples",
]


_LAZY: dict[str, str] = {
    "AsyncExtractionStream": "extractor._stream",
    "ExtractionStream": "extractor._stream",
    "ChunkError": "extractor._parts",
    "LongExtraction": "extractor._parts",
    "aextract_long": "extractor._long",
    "extract_long": "extractor._long",
    "Merge": "extractor._merge",
    "MergeError": "extractor._merge",
    "ResponseCache": "extractor._cache",
}


def __getattr__(name: str) -> Any:
    # streams and long documents load on first use: most programs use neither (import time)
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'extractor' has no attribute {name!r}")
