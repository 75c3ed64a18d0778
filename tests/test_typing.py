"""The public API as a type checker sees it: `mypy --strict` over the files in `typing/`.

`api_ok.py` is user code that must pass as it is, its `assert_type`s included;
`api_errors.py` holds mistakes, each line marked `# E: <code>` with the error mypy must
report there, and no other line may get one. Errors inside `extractor` itself are the
`mypy --strict extractor` gate's business, so imports are followed silently here.
The last tests check that the typed form (`Extractable`) does at run time what its
types promise, as the decorated one does.
"""

from __future__ import annotations

import asyncio
import importlib.util
import re
import subprocess
import sys
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel

from extractor import MODES, Extractable, Options, extractable
from extractor._options import CALL_OPTIONS, Mode
from extractor._params import PARAMETERS
from extractor.testing import Answer, ChatServer

ROOT = Path(__file__).resolve().parent.parent
FILES = ROOT / "tests" / "typing"
MARKER = re.compile(r"#\s*E:\s*(?P<codes>[a-z-]+(?:\s*,\s*[a-z-]+)*)")
ERROR = re.compile(
    r"^(?P<path>[^:]+):(?P<line>\d+): error: (?P<message>.*?)\s+\[(?P<code>[a-z-]+)\]$"
)

needs_mypy = pytest.mark.skipif(
    importlib.util.find_spec("mypy") is None, reason="mypy is not installed (the test extra)"
)

#: (line, error code) -> message, for each file
Found = dict[tuple[int, str], str]


@pytest.fixture(scope="module")
def reported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Found]:
    """Each file's errors by (line, code), from one mypy run over both files.

    A fresh cache for every run (about 3 s cold): nothing read from an earlier run,
    nothing written into the checkout.
    """
    cache = tmp_path_factory.mktemp("mypy-cache")
    done = subprocess.run(
        [
            *(sys.executable, "-m", "mypy", "--strict", "--config-file", "pyproject.toml"),
            *("--cache-dir", str(cache), "--follow-imports", "silent"),
            *("--no-pretty", "--show-error-codes", "--no-error-summary"),
            *(str(path.relative_to(ROOT)) for path in sorted(FILES.glob("*.py"))),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode in (0, 1), done.stdout[-3000:] + done.stderr[-3000:]
    found: dict[str, Found] = {path.name: {} for path in FILES.glob("*.py")}
    for line in done.stdout.splitlines():
        error = ERROR.match(line)
        if error is None:
            assert ": error:" not in line, line  # an error this parser cannot read
            continue
        errors = found.setdefault(Path(error["path"]).name, {})
        errors[int(error["line"]), error["code"]] = error["message"]
    return found


def expected_in(path: Path) -> set[tuple[int, str]]:
    expected: set[tuple[int, str]] = set()
    for number, text in enumerate(path.read_text().splitlines(), start=1):
        marker = MARKER.search(text)
        if marker is not None:
            expected |= {(number, code.strip()) for code in marker["codes"].split(",")}
    return expected


@needs_mypy
def test_correct_use_type_checks_cleanly(reported: dict[str, Found]) -> None:
    assert reported["api_ok.py"] == {}


@needs_mypy
def test_each_mistake_is_caught_where_it_is_marked(reported: dict[str, Found]) -> None:
    expected = expected_in(FILES / "api_errors.py")
    assert len(expected) > 30  # the markers were read
    found = reported["api_errors.py"]
    missed = sorted(expected - set(found))
    unexpected = {key: message for key, message in found.items() if key not in expected}
    assert (missed, unexpected) == ([], {})


@needs_mypy
def test_only_the_files_checked_report_errors(reported: dict[str, Found]) -> None:
    assert set(reported) == {"api_ok.py", "api_errors.py"}


def test_the_types_name_what_the_run_time_takes() -> None:
    """An option or mode the checks accept but the types lack would be a false error."""
    assert Options.__required_keys__ == frozenset()
    assert Options.__optional_keys__ == CALL_OPTIONS | set(PARAMETERS)
    assert typing.get_args(Mode) == tuple(MODES)


# --- the typed form at run time ---------------------------------------------------------------

TEXT = "Ann Lee (41) can be reached at ann@example.com."


def test_a_decorated_extractable_class_keeps_its_methods_and_uses_the_defaults(
    server: ChatServer,
) -> None:
    @extractable(model="openai/test-model", base_url=server.base_url, mode="tools", temperature=0)
    class Person(Extractable, BaseModel):
        name: str

    server.handler = lambda request: Answer(tool_call={"name": "Ann"})
    assert Person.extract(TEXT) == Person(name="Ann")
    assert asyncio.run(Person.aextract(TEXT, seed=7)) == Person(name="Ann")
    assert [r.body["temperature"] for r in server.requests if r.body] == [0, 0]
    assert server.requests[-1].body is not None
    assert server.requests[-1].body["seed"] == 7
    assert Person.__extractor_options__["temperature"] == 0
    # inherited, not copied on: a method the class defines itself survives the decorator
    assert not set(vars(Person)) & {"extract", "aextract", "stream", "extract_many"}


def test_an_undecorated_extractable_class_takes_its_options_per_call(server: ChatServer) -> None:
    class Person(BaseModel, Extractable):  # the other order
        name: str

    server.handler = lambda request: Answer(content='{"name": "Ann"}')
    options: Options = {"model": "openai/test-model", "base_url": server.base_url}
    assert Person.extract(TEXT, **options) == Person(name="Ann")
    results = list(Person.extract_many(["a", "b"], concurrency=2, **options))
    assert sorted((r.id, r.value) for r in results) == [
        (0, Person(name="Ann")),
        (1, Person(name="Ann")),
    ]
    assert Person.__extractor_options__ == {}
