"""`python -m extractor`: the command line (see `extractor._cli`)."""

from __future__ import annotations

import sys

from extractor._cli import main

if __name__ == "__main__":
    sys.exit(main())
