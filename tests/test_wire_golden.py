"""The wire is unchanged: every case of `tests.wire_golden` sends the golden bytes.

Each case runs its call against a loopback server and compares every request it sent
(path, content type, body) with `tests/data/wire_golden.json`, byte for byte. After a
deliberate change to what goes on the wire, record the file again with
`python -m tests.wire_golden --write` and review its diff.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from extractor import PROVIDERS
from tests.wire_golden import CASES, PRESETS, Case, Recorder, case_name, compare, load_golden

Golden = dict[str, dict[str, str]]


@pytest.fixture(scope="module")
def recorder() -> Iterator[Recorder]:
    with Recorder() as running:
        yield running


@pytest.fixture(scope="module")
def golden() -> Golden:
    return load_golden()


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_the_case_sends_the_golden_bytes(case: Case, recorder: Recorder, golden: Golden) -> None:
    expected = {key: wire for key, wire in golden.items() if case_name(key) == case.name}
    problems = compare(expected, recorder.capture(case))
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)


def test_every_golden_request_belongs_to_a_case(golden: Golden) -> None:
    names = {case.name for case in CASES}
    stale = [key for key in golden if case_name(key) not in names]
    assert not stale, f"golden requests of cases that no longer exist: {stale[:5]}"


def test_every_http_preset_is_covered() -> None:
    # providers served by their own backend (the embedded model, scripted answers) send
    # nothing on the wire
    assert {name for name, p in PROVIDERS.items() if p.backend is None} == set(PRESETS)


def test_a_one_character_change_is_reported_where_it_is(golden: Golden) -> None:
    key, wire = next(iter(golden.items()))
    body = wire["body"]
    at = len(body) // 2
    other = "~" if body[at] != "~" else "!"
    changed = {key: {**wire, "body": body[:at] + other + body[at + 1 :]}}
    (problem,) = compare({key: wire}, changed)
    assert problem.startswith(f"{key}: body differs at character {at} ")
