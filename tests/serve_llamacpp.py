"""`python -m llama_cpp.server`, loading its model with the settings the probe chose here.

llama-cpp-python's server has no option for llama.cpp's extra buffer types, and with
them on, a native build dies on a VM that advertises AMX but traps its instructions.
The interoperability tests start the server through this module:
`python -m tests.serve_llamacpp --model FILE.gguf [server options]`.
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import llama_cpp

from extractor._local.runtime import decide, llama_defaults


def main() -> None:
    model = Path(sys.argv[sys.argv.index("--model") + 1])
    settings = decide(model)
    with llama_defaults(llama_cpp, extra_bufts=settings.extra_bufts):
        runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
