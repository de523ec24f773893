"""The `camcap` command: a thin shell that parses flags into `Settings` and calls the library.

Every command builds one `Settings` (flags override CAMCAP_* environment variables, which override
the defaults), calls the public API, and prints. User errors (`CamcapError`) become one line on
stderr and a non-zero exit code, never a traceback.

`main` (_main.py) runs a command line; `build_parser` (_parser.py) holds every command's flags and
help. Each command's work lives in its own module: _caption.py, _serve.py, _machine.py (models,
pull and doctor) and _bench.py, all turning flags into `Settings` the same way (_settings.py).
"""

from __future__ import annotations

from camcap.cli._main import main
from camcap.cli._parser import build_parser

__all__ = ["build_parser", "main"]
