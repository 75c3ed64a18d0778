"""`python -m extractor` in a child process, as a user's shell would start it.

The child gets this checkout on its path and none of the provider keys or the default
model of the environment running the tests, so it talks only to the test's server.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
KEY_ENVS = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENROUTER_API_KEY", "MISTRAL_API_KEY")


def child_env() -> dict[str, str]:
    """The environment without provider keys or EXTRACTOR_MODEL, with ROOT on PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if k not in (*KEY_ENVS, "EXTRACTOR_MODEL")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def command(*argv: str) -> list[str]:
    """The command line of `python -m extractor ARGV...` with this interpreter."""
    return [sys.executable, "-m", "extractor", *argv]


def spawn(*argv: str, **popen: Any) -> subprocess.Popen[str]:
    """Start `python -m extractor ARGV...` from ROOT, its output captured as text.

    Ctrl-C reaches it as it would from a terminal: a shell running the tests in the
    background ignores SIGINT, and children inherit that, so the default is restored.
    """
    options: dict[str, Any] = {
        "cwd": ROOT,
        "env": child_env(),
        "stdout": subprocess.PIPE,
        "stderr": subprocess.PIPE,
        "text": True,
        "preexec_fn": lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        **popen,
    }
    return subprocess.Popen(command(*argv), **options)


def sigkill_when(
    child: subprocess.Popen[Any], ready: Callable[[], bool], *, timeout: float = 30.0
) -> None:
    """`kill -9` the running `child` the moment `ready()` holds.

    Fails if the child ends first or the moment does not come within `timeout` seconds;
    the child is reaped either way.
    """
    try:
        deadline = time.monotonic() + timeout
        while not ready():
            assert child.poll() is None, "the job ended before it could be killed"
            assert time.monotonic() < deadline, "the kill point never came"
            time.sleep(0.002)
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    assert child.returncode == -signal.SIGKILL
