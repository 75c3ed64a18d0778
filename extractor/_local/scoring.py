"""Choosing the likeliest candidate: a best-first search over the tree of their tokens.

Each candidate is a path of tokens; some tokens *count* (their log-probability adds to
the candidate's score) and the others are copied for free. Where the candidate ends, a
token that closes it counts too. Candidates that share a start share a path in the
tree. Every log-probability is at most 0, so the score of a path so far bounds the
score of every candidate below it: the search decodes the most promising open paths,
several at once in one llama.cpp batch (each a branch of the KV cache forked from its
parent's), and stops when no open path can beat the best candidate found. The choice
is the one scoring every candidate in full would make, for a small part of the work:
most paths are dropped after their first token.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Generic, TypeVar

import numpy as np
import numpy.typing as npt

from extractor._local.engine import Branch, Engine, Row

__all__ = ["Path", "best"]

T = TypeVar("T")
Ends = npt.NDArray[np.int64]

#: Open paths decoded together in one round (one llama.cpp batch).
ROUND: Final = 12
#: Open paths decoded together while no candidate is complete yet.
DIVE: Final = 2
#: A chain this long or longer is decoded in two parts when its second token counts.
SPLIT: Final = 4


@dataclass(frozen=True)
class Path(Generic[T]):
    """One candidate: its tokens, which of them count, and the tokens that may close it."""

    value: T
    tokens: Sequence[int]
    counted: frozenset[int]
    ends: Ends  # one of these after the last token closes the candidate


@dataclass
class _Node(Generic[T]):
    token: int
    counted: bool
    children: dict[tuple[int, bool], _Node[T]] = field(default_factory=dict)
    stops: list[tuple[T, Ends]] = field(default_factory=list)  # candidates that end here


@dataclass(order=True)
class _Open(Generic[T]):
    """A chain of nodes not decoded yet, under a decoded parent."""

    priority: float  # minus the bound: heapq pops the smallest
    order: int
    chain: list[_Node[T]] = field(compare=False)
    parent: Branch | None = field(compare=False)
    score: float = field(compare=False)  # the path's score up to the chain (first token included)


def best(engine: Engine, paths: Sequence[Path[T]], prompt: Sequence[int]) -> tuple[float, T] | None:
    """The candidate with the highest score as the continuation of `prompt`, and that score.

    The prompt goes to the engine together with the tokens every candidate starts with,
    in one decode (each decode reads the model's weights once, which costs more than
    the tokens in it). A start they all share adds the same to every score, so scores
    count from where the candidates part. Nothing is decoded when there is at most one
    candidate; None when there is none.
    """
    root: _Node[T] = _Node(token=-1, counted=False)
    for path in paths:
        node = root
        for i, token in enumerate(path.tokens):
            key = (token, i in path.counted)
            node = node.children.setdefault(key, _Node(token=token, counted=key[1]))
        if node is not root:
            node.stops.append((path.value, path.ends))
    found: tuple[float, T] | None = None
    if len(paths) <= 1:  # nothing to choose between
        return (0.0, paths[0].value) if paths else None
    order = itertools.count()
    heap: list[_Open[T]] = []

    def push(node: _Node[T], parent: Branch | None, score: float, row: Row | None) -> None:
        if node.counted:
            assert row is not None
            score += float(row[node.token])
        heapq.heappush(heap, _Open(-score, next(order), _chain(node), parent, score))

    shared = []
    while len(root.children) == 1 and not root.stops:  # a start every candidate shares
        root = next(iter(root.children.values()))
        shared.append(root.token)
    base = engine.start([*prompt, *shared])
    for value, ends in root.stops:
        total = float(np.logaddexp.reduce(base[ends]))
        if found is None or total > found[0]:
            found = (total, value)
    for child in root.children.values():
        push(child, None, 0.0, base)
    decoded: list[Branch] = []
    try:
        while heap and engine.free_branches:
            limit = -np.inf if found is None else found[0]
            # until a candidate is complete, nothing bounds the search: dive with the best few
            size = ROUND if found is not None else DIVE
            batch: list[_Open[T]] = []
            while heap and -heap[0].priority > limit and len(batch) < size:
                batch.append(heapq.heappop(heap))
            if not batch:
                break
            batch = batch[: engine.free_branches]
            requests = [
                (item.parent, [n.token for n in item.chain], _wanted(item.chain)) for item in batch
            ]
            branches = engine.branch(requests)
            decoded += branches
            for item, branch in zip(batch, branches, strict=True):
                score = item.score
                for i, node in enumerate(item.chain):
                    if i and node.counted:
                        score += float(branch.rows[i - 1][node.token])
                last, tail = branch.rows.get(len(item.chain) - 1), item.chain[-1]
                for value, ends in tail.stops:
                    assert last is not None
                    total = score + float(np.logaddexp.reduce(last[ends]))
                    if found is None or total > found[0]:
                        found = (total, value)
                for child in tail.children.values():
                    push(child, branch, score, last)
                branch.rows.clear()  # rows are a vocabulary wide each: keep only scores
    finally:
        engine.release(decoded)
    return found


def _chain(node: _Node[Any]) -> list[_Node[Any]]:
    """The nodes decoded together: down to the first that ends a candidate or forks.

    A chain whose second token counts and which runs on for SPLIT tokens or more stops
    after its first: that token's row scores the second, a bound tight enough to drop
    most paths before the tokens after it are decoded.
    """
    chain = [node]
    while not node.stops and len(node.children) == 1:
        node = next(iter(node.children.values()))
        chain.append(node)
    if len(chain) > SPLIT and chain[1].counted and not all(n.counted for n in chain):
        return chain[:1]
    return chain


def _wanted(chain: list[_Node[Any]]) -> list[int]:
    """After which tokens of a chain the next-token rows are needed for its scores."""
    rows = [i - 1 for i in range(1, len(chain)) if chain[i].counted]
    tail = chain[-1]
    if tail.stops or any(child.counted for child in tail.children.values()):
        rows.append(len(chain) - 1)
    return rows
