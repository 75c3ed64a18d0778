"""The best-first search over candidate tokens, against the real embedded model.

The search decodes only the paths that can still win; these tests score every candidate
in full, one branch each, and check that the search chooses the same one with the same
score, and that it decoded less to do so.

Skipped unless the local extra is installed (pip install -e '.[local]'); CI installs it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import pytest

from tests.extras import require_extras

require_extras("local")

from extractor._local import scoring  # noqa: E402  (needs the extra)
from extractor._local.engine import SEQUENCES, Engine, Row, load_engine  # noqa: E402
from extractor._local.weights import DEFAULT_LOCAL_MODEL, model_path  # noqa: E402

pytestmark = pytest.mark.local

PROMPT = """\
Document:
KEDAI RUNCIT MAJU JAYA SDN BHD
NO. 12, JALAN BESAR 3, TAMAN MAJU,
43000 KAJANG, SELANGOR
DATE: 05/03/2018
SUB TOTAL: 24.50
GST 6%: 1.47
TOTAL: 26.00
CASH: 50.00
CHANGE: 24.00

The record as JSON:
{"total":"""


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    engine = load_engine(model_path(DEFAULT_LOCAL_MODEL))
    with engine.lock:
        yield engine


def _start(engine: Engine) -> Row:
    return engine.start(engine.tokenize(PROMPT, bos=True))


def _full_score(engine: Engine, path: scoring.Path[str], base: Row) -> float:
    """Every row of the path decoded: the sum of its counted tokens and of its closing."""
    [branch] = engine.branch([(None, path.tokens, range(len(path.tokens)))])
    try:
        rows = [base, *(branch.rows[i] for i in range(len(path.tokens)))]
        score = sum(float(rows[i][t]) for i, t in enumerate(path.tokens) if i in path.counted)
        return score + float(np.logaddexp.reduce(rows[-1][path.ends]))
    finally:
        engine.release([branch])


def _paths(engine: Engine, values: Sequence[str], counted: int | None) -> list[scoring.Path[str]]:
    """Each value as a JSON string after a space; `counted` tokens of each, or all."""
    paths = []
    for value in values:
        tokens = engine.tokenize(' "') + engine.tokenize(value)
        kept = range(len(tokens)) if counted is None else range(min(counted, len(tokens)))
        paths.append(scoring.Path(value, tokens, frozenset(kept), engine.string_end))
    return paths


AMOUNTS = ["26.00", "24.50", "1.47", "50.00", "24.00", "6"]
LINES = [
    "KEDAI RUNCIT MAJU JAYA SDN BHD",
    "NO. 12, JALAN BESAR 3, TAMAN MAJU,",
    "43000 KAJANG, SELANGOR",
    "TOTAL: 26.00",
    "CASH: 50.00",
]


@pytest.mark.parametrize(("values", "counted"), [(AMOUNTS, None), (LINES, 3)])
def test_the_search_chooses_what_scoring_every_candidate_chooses(
    engine: Engine, values: list[str], counted: int | None
) -> None:
    base = _start(engine)
    paths = _paths(engine, values, counted)
    full = {path.value: _full_score(engine, path, base) for path in paths}
    # the search counts from where the candidates part: here after the ` "` they share
    [shared] = {path.tokens[0] for path in paths}
    assert len({path.tokens[1] for path in paths}) > 1
    common = float(base[shared])

    before = engine.decoded_tokens
    found = scoring.best(engine, paths, engine.tokenize(PROMPT, bos=True))
    searched = engine.decoded_tokens - before

    assert found is not None
    score, value = found
    assert full[value] == pytest.approx(max(full.values()), abs=0.05)
    assert score + common == pytest.approx(full[value], abs=0.05)
    assert searched < sum(len(p.tokens) for p in paths)
    assert engine.free_branches == SEQUENCES - 1  # every branch was released


def test_the_prompt_and_the_shared_start_go_in_one_decode(engine: Engine) -> None:
    prompt = engine.tokenize(PROMPT + " ", bos=True)  # not what the engine holds now
    _start(engine)
    before = engine.decodes
    found = scoring.best(engine, _paths(engine, AMOUNTS[:2], None), prompt)
    assert found is not None
    # one decode for the prompt's new tokens and ` "`, then one round for the two amounts
    assert engine.decodes - before == 2


def test_one_candidate_is_chosen_without_decoding(engine: Engine) -> None:
    before = engine.decodes
    found = scoring.best(engine, _paths(engine, ["26.00"], None), engine.tokenize("new", bos=True))
    assert found is not None and found[1] == "26.00"
    assert engine.decodes == before


def test_no_candidate_gives_none(engine: Engine) -> None:
    assert scoring.best(engine, [], engine.tokenize(PROMPT, bos=True)) is None
