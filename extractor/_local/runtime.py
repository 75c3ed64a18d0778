"""Which llama.cpp settings this machine can run, decided before a model loads in process.

A llama.cpp build can hold instructions the CPU will not run: a wheel built natively on
one machine and used on another (pip caches built wheels), or ggml's AMX buffer type on a
VM that advertises AMX yet traps its tile instructions. Either kills the process with a
signal (SIGILL, SIGSEGV) that no Python code can catch. So, once per machine and library
build, a child process loads the model and evaluates a batch of tokens, first with
llama.cpp's extra buffer types (AMX, repacked weights) and then without; the first
setting that survives is the verdict, kept in the cache directory. Where neither does,
the user gets a `ConfigurationError` that says what to reinstall, not a dead process.

`EXTRACTOR_LLAMA_EXTRA_BUFTS=0` (or `1`) skips the probe and says it outright.

Run as `python -m extractor._local.runtime MODEL.gguf --extra-bufts 0|1`, this module is
the probe's child.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

from extractor._errors import ConfigurationError
from extractor._local.weights import cache_dir

__all__ = ["Settings", "cpu_model", "decide", "llama_defaults", "probe"]

logger = logging.getLogger("extractor.local")

#: How long one probe may take: loading a small model and one batch take a few seconds.
PROBE_TIMEOUT_S: Final = 180.0
#: Tokens the probe evaluates in one batch: enough for the batched matrix kernels
#: (AMX, repacked weights) that a single token never reaches.
PROBE_TOKENS: Final = 64
REBUILD_HINT: Final = (
    'rebuild llama-cpp-python for this machine: CMAKE_ARGS="-DGGML_NATIVE=OFF" '
    "python -m pip install --force-reinstall --no-cache-dir --no-deps llama-cpp-python"
)
_ENV: Final = "EXTRACTOR_LLAMA_EXTRA_BUFTS"
_defaults_lock = threading.Lock()


@dataclass(frozen=True)
class Settings:
    """What llama.cpp may use here: its extra buffer types (AMX, repacked weights) or not."""

    extra_bufts: bool


@dataclass(frozen=True)
class Outcome:
    """How one probe child ended."""

    extra_bufts: bool
    returncode: int | None  # None: it did not finish in time
    detail: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def decide(model: Path) -> Settings:
    """The settings to load `model` with: from the environment, the cached verdict, or a probe.

    Raises `ConfigurationError` when no setting runs on this machine.
    """
    explicit = os.environ.get(_ENV)
    if explicit in ("0", "1"):
        return Settings(extra_bufts=explicit == "1")
    path = verdict_path(model)
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        kept = json.loads(path.read_text())["extra_bufts"]
        if isinstance(kept, bool):
            return Settings(extra_bufts=kept)
    outcomes = []
    for extra in (True, False):
        outcome = probe(model, extra_bufts=extra)
        outcomes.append(outcome)
        logger.info(
            "llama.cpp probe, extra buffer types %s: %s", "on" if extra else "off", outcome.detail
        )
        if outcome.ok:
            settings = Settings(extra_bufts=extra)
            _write_verdict(path, settings, outcomes)
            return settings
    tried = "; ".join(
        f"extra buffer types {'on' if o.extra_bufts else 'off'}: {o.detail}" for o in outcomes
    )
    raise ConfigurationError(
        f"the embedded model cannot run with this build of llama-cpp-python on this CPU "
        f"({cpu_model()}); a probe process {tried}. The build probably uses instructions "
        f"this CPU lacks (a wheel built on, or cached from, another machine): {REBUILD_HINT}"
    )


def probe(model: Path, *, extra_bufts: bool, timeout: float = PROBE_TIMEOUT_S) -> Outcome:
    """Load `model` in a child process and evaluate one batch; report how the child ended."""
    command = [
        sys.executable,
        "-m",
        "extractor._local.runtime",
        str(model),
        "--extra-bufts",
        "1" if extra_bufts else "0",
    ]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired:
        return Outcome(extra_bufts, None, f"did not finish within {timeout:.0f} s")
    if done.returncode == 0:
        return Outcome(extra_bufts, 0, "ran")
    if done.returncode < 0:
        try:
            name = signal.Signals(-done.returncode).name
        except ValueError:
            name = f"signal {-done.returncode}"
        return Outcome(extra_bufts, done.returncode, f"died with {name}")
    last = (done.stderr.strip().splitlines() or ["no message"])[-1]
    return Outcome(extra_bufts, done.returncode, f"exited with status {done.returncode}: {last}")


def verdict_path(model: Path) -> Path:
    """Where the verdict for this machine, library build and model file is kept."""
    return cache_dir() / "runtime" / f"{_fingerprint(model)}.json"


def _fingerprint(model: Path) -> str:
    """What a verdict depends on: the CPU, the llama.cpp libraries, the model file."""
    parts: list[str] = [platform.machine(), _cpu_signature()]
    try:
        import llama_cpp
    except ImportError:
        parts.append("no llama_cpp")
    else:
        parts.append(str(getattr(llama_cpp, "__version__", "")))
        lib = Path(llama_cpp.__file__).parent / "lib"
        for file in sorted(lib.glob("*")) if lib.is_dir() else []:
            with contextlib.suppress(OSError):
                stat = file.stat()
                parts.append(f"{file.name}:{stat.st_size}:{stat.st_mtime_ns}")
    with contextlib.suppress(OSError):
        stat = model.stat()
        parts.append(f"{model.resolve()}:{stat.st_size}:{stat.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:24]


def _cpu_fields() -> dict[str, str]:
    """The first processor's entry in /proc/cpuinfo (empty where there is none)."""
    fields: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if not line.strip():
                break
            key, _, value = line.partition(":")
            fields[key.strip()] = value.strip()
    return fields


def _cpu_signature() -> str:
    fields = _cpu_fields()
    kept = ("vendor_id", "cpu family", "model", "model name", "stepping", "flags")
    return "|".join(fields.get(key, "") for key in kept) or platform.processor()


def cpu_model() -> str:
    """The CPU's model name, as the benchmarks and error messages print it."""
    return _cpu_fields().get("model name") or platform.processor() or platform.machine()


def _write_verdict(path: Path, settings: Settings, outcomes: Sequence[Outcome]) -> None:
    record = {
        **asdict(settings),
        "cpu": cpu_model(),
        "probes": [asdict(o) for o in outcomes],
    }
    with contextlib.suppress(OSError):  # a read-only cache only means probing again next time
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, partial = tempfile.mkstemp(dir=path.parent, suffix=".partial")
        with os.fdopen(fd, "w") as out:
            json.dump(record, out)
        os.replace(partial, path)


@contextlib.contextmanager
def llama_defaults(lib: Any, *, extra_bufts: bool, sequences: int = 1) -> Iterator[None]:
    """Load models with these settings while the block runs.

    llama-cpp-python's `Llama` takes `use_extra_bufts`, `n_seq_max` and `kv_unified` from
    llama.cpp's default parameters and offers no argument for them, so the two functions
    that give those defaults are wrapped while a model and its context are made.
    `sequences` > 1 asks for that many sequences over one shared (unified) KV cache.
    """
    low = lib.llama_cpp
    model_defaults = low.llama_model_default_params
    context_defaults = low.llama_context_default_params

    def model_params() -> Any:
        params = model_defaults()
        params.use_extra_bufts = extra_bufts
        return params

    def context_params() -> Any:
        params = context_defaults()
        if sequences > 1:
            params.n_seq_max = sequences
            params.kv_unified = True
        return params

    with _defaults_lock:
        low.llama_model_default_params = model_params
        low.llama_context_default_params = context_params
        try:
            yield
        finally:
            low.llama_model_default_params = model_defaults
            low.llama_context_default_params = context_defaults


def _child(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m extractor._local.runtime",
        description="Load a GGUF model with llama.cpp and evaluate one batch of tokens: "
        "exit 0 if this machine runs it (the probe's child process).",
    )
    parser.add_argument("model", type=Path, help="the GGUF file")
    parser.add_argument("--extra-bufts", choices=("0", "1"), required=True)
    args = parser.parse_args(argv)
    import llama_cpp

    with llama_defaults(llama_cpp, extra_bufts=args.extra_bufts == "1"):
        llm = llama_cpp.Llama(
            model_path=str(args.model), n_ctx=256, n_threads=1, n_threads_batch=1, verbose=False
        )
    tokens = llm.tokenize(b"The quick brown fox jumps over the lazy dog. " * 16)[:PROBE_TOKENS]
    llm.eval(tokens)  # one batch: the matrix kernels
    llm.eval(tokens[:1])  # one token: the vector kernels
    llm.close()
    print("ok")
    return 0


if __name__ == "__main__":
    raise SystemExit(_child())
