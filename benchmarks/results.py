"""Helpers shared by the benchmark scripts: the machine they ran on, and RESULTS.md.

Every script writes one ``## name`` section of ``benchmarks/RESULTS.md`` and leaves the
others alone, so the figures of different benchmarks (run at different times, maybe on
different machines) can sit in one file. Each section starts with the same header lines,
built here, because a timing means little without the machine and its load beside it.

The scripts import this as ``from results import ...``: run as ``python benchmarks/x.py``,
a script's own folder is first on ``sys.path``.
"""

from __future__ import annotations

import os
import platform
import re
import shlex
import sys
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

__all__ = [
    "RESULTS_PATH",
    "cpu_model",
    "load_average",
    "machine_lines",
    "package_versions",
    "replace_section",
    "timestamp",
    "write_section",
]

RESULTS_PATH = Path(__file__).resolve().parent / "RESULTS.md"


def timestamp() -> str:
    """Now, in UTC to the minute: results from machines in different zones stay comparable."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo, or the platform's best guess."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_average() -> str:
    """The 1, 5 and 15 minute load averages: other work on the machine skews timings."""
    try:
        return " / ".join(f"{load:.2f}" for load in os.getloadavg())
    except OSError:  # also raised where the platform has no load average
        return "unknown"


def machine_lines() -> list[str]:
    """The Machine, Python and Load average bullet lines of a section header.

    The load average is read now, so call this when the results are written: it tells
    whether the figures were measured on a busy machine.
    """
    return [
        f"- Machine: {platform.platform()}; CPU: {cpu_model()} ({os.cpu_count()} logical CPUs)",
        f"- Python: {platform.python_version()} ({platform.python_implementation()})",
        f"- Load average when written (1/5/15 min): {load_average()}",
    ]


def section_header(name: str, command: str, details: Iterable[str]) -> list[str]:
    """The head of a ``## name`` section: date, machine, the benchmark's own bullet lines
    (``details``, each starting with ``- ``), then the command that wrote it."""
    return [
        f"## {name}",
        "",
        f"- Date: {timestamp()}",
        *machine_lines(),
        *details,
        f"- Command: `{command}`",
        "",
    ]


def package_versions(packages: Iterable[str]) -> str:
    """Installed versions of ``packages``, comma-separated; a missing one says so."""
    found = []
    for package in packages:
        try:
            found.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            found.append(f"{package} not installed")
    return ", ".join(found)


def replace_section(document: str, name: str, section: str) -> str:
    """Replace the ``## name`` section of ``document`` (or append it), keeping the rest.

    A section runs from its ``## name`` heading to the next ``## `` heading or the end;
    ``### `` subsections inside it go with it.
    """
    if not document.strip():
        document = "# Benchmark results\n"
    pattern = re.compile(rf"^## {re.escape(name)}[ \t]*\n.*?(?=^## |\Z)", re.M | re.S)
    if pattern.search(document):
        return pattern.sub(lambda _: section + "\n", document, count=1).rstrip() + "\n"
    return document.rstrip() + "\n\n" + section


def write_section(name: str, section: str) -> None:
    """Write ``section`` as the ``## name`` section of RESULTS.md, in place."""
    current = RESULTS_PATH.read_text() if RESULTS_PATH.exists() else ""
    RESULTS_PATH.write_text(replace_section(current, name, section))


def command_line(script: str, argv: Sequence[str] | None) -> str:
    """How to run this again: `python benchmarks/SCRIPT` with the arguments given."""
    given = sys.argv[1:] if argv is None else argv
    return f"python benchmarks/{script}" + "".join(f" {shlex.quote(a)}" for a in given)
