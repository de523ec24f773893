"""`python -m camcap ...` runs the same command line as the `camcap` script."""

from __future__ import annotations

from camcap.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
