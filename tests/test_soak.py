"""The fault-injection soak (benchmarks/soak.py), small: 300 documents, the same plan.

The same script as the full soak, run as a user would run it: two jobs started at once
on one output, three SIGKILLs, reruns, every fault of issue 11. It must leave no
document lost or twice, no key in any file or run's output, no run hung, and be done
within a bound. RESULTS.md is left alone (`--no-write`).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.processes import ROOT

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX-only")

#: Seconds the whole smoke soak may take on 2 busy cores (it takes 12 to 20).
BOUND = 90


def test_a_small_soak_loses_nothing_duplicates_nothing_and_leaks_no_key(tmp_path: Path) -> None:
    report_path = tmp_path / "report.json"
    argv = [
        sys.executable, str(ROOT / "benchmarks" / "soak.py"), "--documents", "300",
        "--timeout", "1", "--deadline", "10", "--run-bound", "60",
        "--work", str(tmp_path / "work"), "--report-json", str(report_path), "--no-write",
    ]  # fmt: skip
    started = time.monotonic()
    done = subprocess.run(
        argv, cwd=ROOT, capture_output=True, text=True, timeout=BOUND + 30, check=False
    )
    seconds = time.monotonic() - started
    assert report_path.exists(), done.stderr
    report = json.loads(report_path.read_text())
    failing = [check for check in report["checks"] if not check["ok"]]
    runs = [(run["run"], run["exit"], run["last_line"]) for run in report["runs"]]
    assert report["documents"] == 300
    assert report["lost"] == 0, (failing, runs)
    assert report["duplicated"] == 0, failing
    assert report["unknown"] == 0
    assert report["broken_lines"] == 0
    assert report["records"] + report["failures"] == 300
    assert report["key_in_files"] == [], report["key_in_files"]
    assert report["key_in_logs"] == [], report["key_in_logs"]
    assert report["hung"] == 0, runs
    assert all(start["refused"] for start in report["competing"].values()), report["competing"]
    assert report["foreign_failure_types"] == [], report["failure_types"]
    assert seconds < BOUND, f"the smoke soak took {seconds:.0f} s"
    assert "## soak" in done.stdout  # the section it would have written
