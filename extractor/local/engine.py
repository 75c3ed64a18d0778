"""A language model running in process on llama-cpp-python, loaded once and shared.

The engine offers what grounded extraction needs and a chat server does not: keep a
prompt in the KV cache, score many continuations of it (the log-probability of every
token), and commit the chosen one. It also generates under a JSON Schema grammar.
llama.cpp contexts are not thread-safe: every use holds the engine's lock.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from extractor.errors import ConfigurationError
from extractor.local.runtime import decide, llama_defaults
from extractor.local.weights import INSTALL_HINT

__all__ = ["Engine", "load_engine"]

Row = npt.NDArray[np.float32]

logger = logging.getLogger("extractor.local")

_engines: dict[tuple[str, int, int], Engine] = {}
_engines_lock = threading.Lock()


_log_callback: Any = None


def _llama() -> Any:
    global _log_callback
    try:
        import llama_cpp
    except ImportError:
        raise ConfigurationError(f"local models run on llama-cpp-python; {INSTALL_HINT}") from None
    if _log_callback is None:
        # llama.cpp writes its own notes to stderr; a library sends them to logging instead
        @llama_cpp.llama_log_callback  # type: ignore[untyped-decorator]  # ctypes factory
        def forward(level: int, text: bytes, user_data: Any) -> None:
            logger.debug("llama.cpp: %s", text.decode("utf-8", errors="replace").rstrip())

        _log_callback = forward  # kept referenced: llama.cpp holds only a raw pointer
        llama_cpp.llama_log_set(_log_callback, None)
    return llama_cpp


def default_threads() -> int:
    """`$EXTRACTOR_THREADS`, else every core the process may use."""
    explicit = os.environ.get("EXTRACTOR_THREADS")
    if explicit:
        return max(1, int(explicit))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on every platform
        return os.cpu_count() or 1


@atexit.register
def _close_engines() -> None:
    """Free the models before interpreter shutdown tears down what their finalizers need."""
    for engine in _engines.values():
        engine.llm.close()
    _engines.clear()


def load_engine(path: Path, *, threads: int | None = None, n_ctx: int = 4096) -> Engine:
    """The process-wide engine for a GGUF file: loaded on first use, then shared."""
    key = (str(path), threads or default_threads(), n_ctx)
    engine = _engines.get(key)
    if engine is None:
        with _engines_lock:
            engine = _engines.get(key)
            if engine is None:
                engine = _engines[key] = Engine(path, threads=key[1], n_ctx=n_ctx)
    return engine


class Engine:
    """One loaded model, its context, and the committed prefix of the current prompt."""

    def __init__(self, path: Path, *, threads: int, n_ctx: int) -> None:
        llama_cpp = _llama()
        self.lib = llama_cpp
        # decided in a child process first: a build this CPU cannot run kills the process
        self.settings = decide(path)
        with llama_defaults(llama_cpp, extra_bufts=self.settings.extra_bufts):
            self.llm = llama_cpp.Llama(
                model_path=str(path),
                n_ctx=n_ctx,
                n_batch=512,
                n_threads=threads,
                n_threads_batch=threads,
                verbose=False,
            )
        self.lock = threading.RLock()
        self.n_ctx = n_ctx
        self.vocab = int(self.llm.n_vocab())
        self._memory = llama_cpp.llama_get_memory(self.llm.ctx)
        self._batch = llama_cpp.llama_batch_init(512, 0, 1)
        self._committed: list[int] = []
        self._last: Row | None = None
        self.string_end, self.value_end = self._end_tokens()

    # --- tokens -----------------------------------------------------------------------------

    def tokenize(self, text: str, *, bos: bool = False) -> list[int]:
        """Tokens of `text`, without special-token parsing (documents stay data)."""
        return list(self.llm.tokenize(text.encode("utf-8"), add_bos=bos, special=False))

    def _end_tokens(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """Tokens that can close a JSON string (start with `"`), and those that end a value."""
        strings, values = [], []
        for token in range(self.vocab):
            piece = self.llm.detokenize([token])
            if piece.startswith(b'"'):
                strings.append(token)
            elif piece[:1] in (b",", b"}", b"]", b"\n", b" "):
                values.append(token)
        return np.array(strings, dtype=np.int64), np.array(values, dtype=np.int64)

    # --- the KV cache -----------------------------------------------------------------------

    @property
    def prompt(self) -> list[int]:
        """The committed tokens of the current prompt."""
        return list(self._committed)

    @property
    def position(self) -> int:
        """How many tokens of the current prompt are committed."""
        return len(self._committed)

    def start(self, tokens: Sequence[int]) -> Row:
        """Begin a new prompt; reuse whatever prefix of the previous one is still cached."""
        shared = 0
        for old, new in zip(self._committed, tokens, strict=False):
            if old != new:
                break
            shared += 1
        if shared == len(tokens):  # keep at least one token to evaluate for its logits
            shared -= 1
        del self._committed[shared:]
        return self.commit(tokens[shared:])

    def commit(self, tokens: Sequence[int]) -> Row:
        """Append tokens to the prompt; return the log-probabilities of the next token."""
        if not tokens and self._last is not None:
            return self._last
        if not tokens:  # nothing new, but the last row is unknown: evaluate the last again
            tokens = [self._committed.pop()]
        self._decode(tokens, self.position, logits_at=set())
        self._committed.extend(tokens)
        self._last = self._row(-1)
        self._sync()
        return self._last

    def score(
        self, tokens: Sequence[int], first: Row, rows: Sequence[int] | None = None
    ) -> dict[int, Row]:
        """Next-token rows after each of the given positions of a continuation of the prompt.

        `rows` lists the token indices whose next-token distribution is wanted (all when
        None); the log-probability of token `i` is then `rows[i - 1][tokens[i]]`, and of
        token 0 `first[tokens[0]]`. Fewer rows is cheaper: each is a pass through the
        output layer over the whole vocabulary. Nothing is committed.
        """
        if len(tokens) > 512:
            raise ValueError("a scored continuation is at most 512 tokens")
        wanted = range(len(tokens)) if rows is None else sorted(set(rows))
        self._decode(tokens, self.position, logits_at=set(wanted))
        return {i: self._row(i) for i in wanted}

    def _decode(self, tokens: Sequence[int], start: int, *, logits_at: set[int]) -> None:
        if start + len(tokens) > self.n_ctx:
            raise ConfigurationError(
                f"the document is too long for the local model's context ({self.n_ctx} tokens)"
            )
        lib, batch = self.lib, self._batch
        lib.llama_memory_seq_rm(self._memory, 0, start, -1)
        for offset in range(0, len(tokens), 512):
            chunk = tokens[offset : offset + 512]
            batch.n_tokens = len(chunk)
            last = offset + len(chunk) == len(tokens)
            for i, token in enumerate(chunk):
                batch.token[i] = token
                batch.pos[i] = start + offset + i
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = 0
                batch.logits[i] = (offset + i) in logits_at or (last and i == len(chunk) - 1)
            if lib.llama_decode(self.llm.ctx, batch) != 0:
                raise RuntimeError("llama_decode failed")

    def _row(self, index: int) -> Row:
        pointer = self.lib.llama_get_logits_ith(self.llm.ctx, index)
        logits = np.ctypeslib.as_array(pointer, shape=(self.vocab,))
        top = float(logits.max())
        row: Row = (logits - (top + np.log(np.exp(logits - top).sum()))).astype(np.float32)
        return row

    def _sync(self) -> None:
        # keep llama-cpp-python's own bookkeeping in step, so its generate() reuses our prefix
        n = self.position
        self.llm.input_ids[:n] = self._committed
        self.llm.n_tokens = n

    # --- generation under a grammar ---------------------------------------------------------

    def generate(
        self, prompt: Sequence[int], schema: dict[str, Any], *, max_tokens: int, **sampling: Any
    ) -> tuple[str, str, int]:
        """Text generated after `prompt` under the schema's grammar: (text, finish, tokens)."""
        grammar = self.lib.LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False)
        out = self.llm.create_completion(
            list(prompt), grammar=grammar, max_tokens=max_tokens, **sampling
        )
        # generation moved the cache on: take llama-cpp-python's record of what it holds
        self._committed = [int(t) for t in self.llm.input_ids[: self.llm.n_tokens]]
        self._last = None
        choice = out["choices"][0]
        used = int(out["usage"]["completion_tokens"])
        return str(choice["text"]), str(choice["finish_reason"]), used
