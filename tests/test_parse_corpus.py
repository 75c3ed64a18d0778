"""The corpus of malformed answers: each gives its JSON, or the error it should raise.

`tests/data/malformed_answers.jsonl` holds one case a line: `id`, `kind`, the answer
`text`, and either `expect` (the value it must read as) or `error` (`truncated` or
`invalid`); `schema`, where given, is what the answer is held to (else any object), so
"the first candidate the schema accepts" is part of what is tested.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from extractor._errors import InvalidAnswer, TruncatedAnswer
from extractor._parse import REPAIRS, load_answer
from tests.parsing import loader, same

CORPUS = Path(__file__).parent / "data" / "malformed_answers.jsonl"
CASES: list[dict[str, Any]] = [json.loads(line) for line in CORPUS.read_text().splitlines()]
ERRORS = {"truncated": TruncatedAnswer, "invalid": InvalidAnswer}


def test_the_corpus_is_big_and_varied():
    ids = [case["id"] for case in CASES]
    assert len(ids) == len(set(ids)) >= 60
    outcomes = Counter(case.get("error", "value") for case in CASES)
    assert outcomes["value"] >= 60 and outcomes["truncated"] >= 8 and outcomes["invalid"] >= 8
    assert all(("expect" in case) != ("error" in case) for case in CASES)


@pytest.mark.parametrize("case", CASES, ids=[case["id"] for case in CASES])
def test_case(case: dict[str, Any]):
    load = loader(case.get("schema", {"type": "object"}))
    if "error" in case:
        with pytest.raises(ERRORS[case["error"]]) as caught:
            load_answer(case["text"], load)
        assert caught.value.raw == case["text"]  # the raw answer is kept for the reask
        return
    value, repairs = load_answer(case["text"], load)
    assert same(value, case["expect"])
    assert set(repairs) <= set(REPAIRS)
    assert (repairs == ()) == (case["kind"] == "strict")
