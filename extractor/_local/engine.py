"""A language model running in process on llama-cpp-python, loaded once and shared.

The engine offers what grounded extraction needs and a chat server does not: keep a
prompt in the KV cache, score many continuations of it (the log-probability of every
token), and commit the chosen one. Continuations are decoded as branches: each in a
KV-cache sequence of its own that shares its parent's cells (one unified cache), many
branches in one llama.cpp batch. It also generates under a JSON Schema grammar.
llama.cpp contexts are not thread-safe: every use holds the engine's lock.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from extractor._errors import ConfigurationError, DocumentTooLong
from extractor._local.runtime import decide, llama_defaults
from extractor._local.threads import Load, available_cores
from extractor._local.weights import INSTALL_HINT

__all__ = ["Branch", "Engine", "load_engine"]

Row = npt.NDArray[np.float32]

#: Tokens in one llama.cpp batch (`n_batch`, and the size of the batch buffer).
BATCH: Final = 512
#: KV-cache sequences: the prompt's, and one per live branch.
SEQUENCES: Final = 128

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
    return available_cores()


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
                # a count nobody chose follows the machine's load (see `threads`)
                adapt = threads is None and not os.environ.get("EXTRACTOR_THREADS")
                engine = Engine(path, threads=key[1], n_ctx=n_ctx, adapt=adapt)
                _engines[key] = engine
    return engine


class Engine:
    """One loaded model, its context, and the committed prefix of the current prompt."""

    def __init__(self, path: Path, *, threads: int, n_ctx: int, adapt: bool = False) -> None:
        llama_cpp = _llama()
        self.lib = llama_cpp
        # decided in a child process first: a build this CPU cannot run kills the process
        self.settings = decide(path)
        with llama_defaults(llama_cpp, extra_bufts=self.settings.extra_bufts, sequences=SEQUENCES):
            self.llm = llama_cpp.Llama(
                model_path=str(path),
                n_ctx=n_ctx,
                n_batch=BATCH,
                n_threads=threads,
                n_threads_batch=threads,
                verbose=False,
            )
        self.lock = threading.RLock()
        self.n_ctx = n_ctx
        self.threads = threads  # the most it uses
        self.running = threads  # what it uses now
        self.adaptive = adapt  # whether the count follows the machine's load
        self._load = Load() if adapt else None
        self.vocab = int(self.llm.n_vocab())
        self._memory = llama_cpp.llama_get_memory(self.llm.ctx)
        self._batch = llama_cpp.llama_batch_init(BATCH, 0, 1)
        self._committed: list[int] = []
        self._last: Row | None = None
        self._free = list(range(SEQUENCES - 1, 0, -1))  # sequence 0 holds the prompt
        self.decodes = 0  # llama_decode calls, and tokens and rows through them: the cost
        self.decoded_tokens = 0
        self.decoded_rows = 0
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
        if list(tokens) == self._committed and self._last is not None:
            return self._last
        self.fit_threads()
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

    def fit_threads(self) -> None:
        """Run on the cores other processes leave free (unless the count was chosen)."""
        if self._load is None:
            return
        wanted = self._load.threads(self.threads)
        if wanted != self.running:
            logger.debug("llama.cpp threads: %d -> %d (machine load)", self.running, wanted)
            self.lib.llama_set_n_threads(self.llm.ctx, wanted, wanted)
            self.running = wanted

    # --- branches ---------------------------------------------------------------------------

    @property
    def free_branches(self) -> int:
        """How many more branches can be decoded before `release` must free some."""
        return len(self._free)

    def branch(
        self, requests: Sequence[tuple[Branch | None, Sequence[int], Sequence[int]]]
    ) -> list[Branch]:
        """Decode continuations, each in a KV-cache sequence of its own, in shared batches.

        A request is `(parent, tokens, rows)`: the continuation `tokens` of `parent` (a
        branch decoded earlier, or None for the committed prompt), and the indices into
        `tokens` after which the next-token distribution is wanted. The branch shares
        its parent's cells; nothing is committed. `release` frees the sequences.
        """
        if len(requests) > len(self._free):
            raise ValueError(f"{len(requests)} branches asked for, {len(self._free)} free")
        lib, batch = self.lib, self._batch
        made: list[Branch] = []
        pending: list[tuple[Branch, list[tuple[int, int]]]] = []  # branch, (row index, batch slot)
        used = 0
        for parent, tokens, rows in requests:
            if not 0 < len(tokens) <= BATCH:
                raise ValueError(f"a branch is 1 to {BATCH} tokens, not {len(tokens)}")
            if used + len(tokens) > BATCH:
                self._run_batch(used, pending)
                pending, used = [], 0
            start = self.position if parent is None else parent.end
            self.fits(start + len(tokens))  # before a sequence is taken: none leaks
            seq = self._free.pop()
            lib.llama_memory_seq_cp(
                self._memory, 0 if parent is None else parent.seq, seq, -1, start
            )
            wanted = set(rows)
            slots = []
            for i, token in enumerate(tokens):
                slot = used + i
                batch.token[slot] = token
                batch.pos[slot] = start + i
                batch.n_seq_id[slot] = 1
                batch.seq_id[slot][0] = seq
                batch.logits[slot] = i in wanted
                if i in wanted:
                    slots.append((i, slot))
            used += len(tokens)
            branch = Branch(seq=seq, end=start + len(tokens))
            made.append(branch)
            pending.append((branch, slots))
        if used:
            self._run_batch(used, pending)
        return made

    def _run_batch(
        self, used: int, pending: Sequence[tuple[Branch, list[tuple[int, int]]]]
    ) -> None:
        self._batch.n_tokens = used
        if self.lib.llama_decode(self.llm.ctx, self._batch) != 0:
            raise RuntimeError("llama_decode failed (the KV cache may be full)")
        slots = [slot for _, wanted in pending for _, slot in wanted]
        self._count(used, len(slots))
        table = self._rows(slots)
        at = 0
        for branch, wanted in pending:
            for index, _ in wanted:
                branch.rows[index] = table[at]
                at += 1

    def release(self, branches: Sequence[Branch]) -> None:
        """Free the sequences of these branches (their cells go once no sequence holds them)."""
        for branch in branches:
            self.lib.llama_memory_seq_rm(self._memory, branch.seq, -1, -1)
            self._free.append(branch.seq)
            branch.rows.clear()

    def _count(self, tokens: int, rows: int) -> None:
        self.decodes += 1
        self.decoded_tokens += tokens
        self.decoded_rows += rows

    def _rows(self, slots: Sequence[int]) -> Row:
        """Log-probability rows for these batch slots of the last decode, in one array."""
        table: Row = np.empty((len(slots), self.vocab), dtype=np.float32)
        for i, slot in enumerate(slots):
            pointer = self.lib.llama_get_logits_ith(self.llm.ctx, slot)
            table[i] = np.ctypeslib.as_array(pointer, shape=(self.vocab,))
        table -= table.max(axis=1, keepdims=True)
        table -= np.log(np.exp(table).sum(axis=1, keepdims=True))
        return table

    def fits(self, end: int) -> None:
        """Raise DocumentTooLong unless a prompt of `end` tokens fits in the context."""
        if end > self.n_ctx:
            raise DocumentTooLong(
                f"the document is too long for the local model's context ({self.n_ctx} tokens)",
                limit_tokens=self.n_ctx,
            )

    def _decode(self, tokens: Sequence[int], start: int, *, logits_at: set[int]) -> None:
        self.fits(start + len(tokens))
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
            self._count(len(chunk), sum(batch.logits[i] for i in range(len(chunk))))

    def _row(self, index: int) -> Row:
        row: Row = self._rows([index])[0]
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
        """Text generated after `prompt` under the schema's grammar: (text, finish, tokens).

        Raises DocumentTooLong when the prompt leaves no room in the context (a reask
        carrying a long cut-off answer can grow past it), as a decode does.
        """
        self.fits(len(prompt) + 1)
        self.fit_threads()
        try:
            if not grammar_safe(schema):
                raise ValueError("a name or value holds a quote or backslash")
            grammar = self.lib.LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False)
        except Exception as exc:  # a schema llama.cpp's converter cannot take: unconstrained
            logger.warning(
                "llama.cpp cannot make a grammar of this schema (%s): generating "
                "without one; the answer is still validated",
                exc,
            )
            grammar = None
        out = self.llm.create_completion(
            list(prompt), grammar=grammar, max_tokens=max_tokens, **sampling
        )
        # generation moved the cache on: take llama-cpp-python's record of what it holds
        self._committed = [int(t) for t in self.llm.input_ids[: self.llm.n_tokens]]
        self._last = None
        choice = out["choices"][0]
        used = int(out["usage"]["completion_tokens"])
        return str(choice["text"]), str(choice["finish_reason"]), used


def grammar_safe(schema: Any) -> bool:
    """Whether llama.cpp's grammar can spell every property name and constant of `schema`.

    A `"` or `\\` in one makes a grammar its parser refuses, and llama.cpp then crashes
    the process (seen: exit 139) instead of raising: such a schema gets no grammar.
    """
    if isinstance(schema, dict):
        for key, value in schema.items():
            if (
                key == "properties"
                and isinstance(value, dict)
                and any(_unsafe(name) for name in value)
            ):
                return False
            if key in ("enum", "const"):
                values = value if isinstance(value, list) else [value]
                if any(isinstance(v, str) and _unsafe(v) for v in values):
                    return False
            if not grammar_safe(value):
                return False
    elif isinstance(schema, list):
        return all(grammar_safe(v) for v in schema)
    return True


def _unsafe(text: str) -> bool:
    return '"' in text or "\\" in text or any(ord(c) < 32 for c in text)


@dataclass
class Branch:
    """A decoded continuation: its KV-cache sequence, where it ends, the rows asked for.

    `rows[i]` is the log-probability of every next token after the branch's token `i`.
    """

    seq: int
    end: int  # the position after its last token
    rows: dict[int, Row] = field(default_factory=dict)
