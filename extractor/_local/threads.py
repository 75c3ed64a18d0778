"""How many threads llama.cpp should use now: the cores that other processes leave free.

llama.cpp's threads meet at a barrier after every operation of a forward pass, hundreds
of times a token, and wait there spinning. When another process keeps a core busy, one
of two threads is regularly descheduled and the other spins until it returns: measured
on 2 cores (`benchmarks/builds.py`), a receipt that takes 1.4 s on an idle machine took
13.8 s on two threads beside one busy process, and 2.5 s on one thread (25 to 47 s beside
a compiler's two jobs). So before each extraction the engine asks
how much CPU the rest of the machine used since it last asked (from `/proc/stat`, less
this process's own CPU time), and runs on the cores left over, at least one.

`EXTRACTOR_THREADS` fixes the count and turns this off.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Final

__all__ = ["Load", "available_cores"]

#: A share of a core that other processes may use before a thread is given up for them.
BUSY: Final = 0.5
#: The shortest window over which the machine's load is read anew.
WINDOW_S: Final = 0.2


def available_cores() -> int:
    """Every core this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on every platform
        return os.cpu_count() or 1


class Load:
    """Other processes' CPU use, read between extractions."""

    def __init__(self) -> None:
        self._last = _sample()
        self._others = _running_now()

    def others(self) -> float:
        """Cores' worth of CPU that other processes used since the last call (or now)."""
        sample = _sample()
        if sample is None or self._last is None:
            return self._others
        busy, own, wall = (new - old for new, old in zip(sample, self._last, strict=True))
        if wall >= WINDOW_S:
            self._others = max(0.0, (busy - own) / wall)
            self._last = sample
        return self._others

    def threads(self, most: int) -> int:
        """Threads to run with: `most`, less a thread for each core others keep busy."""
        taken = int(self.others() + (1 - BUSY))
        return max(1, min(most, available_cores() - taken))


def _sample() -> tuple[float, float, float] | None:
    """(seconds of busy CPU on the machine, of this process, of wall-clock)."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except (OSError, IndexError):
        return None
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    values = [int(v) for v in fields[:8]]
    busy = sum(values) - values[3] - values[4]  # all but idle and iowait
    return busy / ticks, time.process_time(), time.monotonic()


def _running_now() -> float:
    """Runnable tasks on the machine other than the one asking (`/proc/loadavg`)."""
    with contextlib.suppress(OSError, IndexError, ValueError):
        running = Path("/proc/loadavg").read_text().split()[3].split("/")[0]
        return max(0.0, float(running) - 1)
    return 0.0
