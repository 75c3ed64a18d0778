"""The command line's exit statuses, shared by every command."""

from __future__ import annotations

from typing import Final

__all__ = ["EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_MAX_COST", "EXIT_OK", "EXIT_USAGE"]

#: Every document (or file) has its record.
EXIT_OK: Final = 0
#: Some documents failed; they are in the failures file (or on their output lines).
EXIT_FAILED: Final = 1
#: A usage or configuration error: nothing, or nothing more, was done.
EXIT_USAGE: Final = 2
#: A batch stopped at --max-cost with documents left: a rerun (with a higher cap) goes on.
EXIT_MAX_COST: Final = 3
#: Interrupted (Ctrl-C): a rerun goes on.
EXIT_INTERRUPTED: Final = 130
