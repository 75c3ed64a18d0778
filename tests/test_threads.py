"""llama.cpp's thread count follows the machine's load, read from a real busy process.

Two spinning llama.cpp threads beside one busy process run many times slower than one
thread (see `extractor._local.threads`); these tests start a real process that keeps a
core busy and check that a thread is given up for it, and taken back once it is gone.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from extractor._local.threads import Load, available_cores

pytestmark = pytest.mark.skipif(available_cores() < 2, reason="needs two cores to share")


@contextmanager
def busy_core() -> Iterator[None]:
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        yield
    finally:
        spinner.kill()
        spinner.wait()


def _idle_cores(cores: int) -> int:
    """How many threads the machine leaves free before a test adds its own load.

    These tests measure the real machine: where something else already keeps a core
    busy (other jobs on a shared CI runner), the effect they look for cannot show.
    """
    probe = Load()
    time.sleep(1.0)
    free = probe.threads(cores)
    if free < cores:
        pytest.skip(f"the machine is busy already: {free} of {cores} cores free")
    return free


def test_a_core_another_process_keeps_busy_costs_a_thread() -> None:
    cores = available_cores()
    _idle_cores(cores)
    load = Load()
    with busy_core():
        time.sleep(1.0)
        assert load.others() >= 0.8
        assert load.threads(cores) == cores - 1
    time.sleep(1.0)
    assert load.threads(cores) == cores  # the busy process is gone: the thread comes back


def test_at_least_one_thread_however_busy_the_machine() -> None:
    load = Load()
    with busy_core(), busy_core(), busy_core():
        time.sleep(1.0)
        assert load.threads(available_cores()) == 1


def test_the_engine_runs_on_the_cores_left_free() -> None:
    from tests.extras import require_extras

    require_extras("local")
    from extractor._local.engine import load_engine
    from extractor._local.weights import DEFAULT_LOCAL_MODEL, model_path

    engine = load_engine(model_path(DEFAULT_LOCAL_MODEL))
    if not engine.adaptive or engine.threads < 2:
        pytest.skip("EXTRACTOR_THREADS fixes the count")
    _idle_cores(engine.threads)
    with engine.lock:
        engine.fit_threads()  # the window starts here
        with busy_core():
            time.sleep(1.0)
            engine.fit_threads()
            assert engine.running == engine.threads - 1
        time.sleep(1.0)
        engine.fit_threads()
        assert engine.running == engine.threads
