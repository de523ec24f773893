"""Running a `camcap` command line: parse it, run the command, and turn failures into exit codes.

A user error (`CamcapError`) is one line on stderr, Ctrl+C is exit code 130, and a reader that
closes our stdout early (`| head`) ends the command quietly: none of them prints a traceback.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence

from camcap.cli._parser import build_parser
from camcap.errors import CamcapError


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `camcap` command line; returns the process exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, --version and usage errors
        return exit_.code if isinstance(exit_.code, int) else 0 if exit_.code is None else 2
    if args.handler is None:
        parser.print_help(sys.stderr)
        return 2
    _configure_logging(args.verbose)
    try:
        return int(args.handler(args))
    except CamcapError as exc:
        print(f"camcap: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("camcap: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        if not _stdout_closed():
            raise  # a socket or pipe of the command's own, not the reader of our output: a real error
        # The reader went away (`camcap caption *.jpg | head -1`): not an error worth a traceback.
        # Point stdout at devnull so the interpreter's final flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _stdout_closed() -> bool:
    """True if writing to stdout fails because its reader has gone."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        return True
    return False


def _configure_logging(verbose: int) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    fmt = "%(levelname)s: %(message)s" if verbose == 0 else "%(levelname)s %(name)s: %(message)s"
    logging.basicConfig(level=level, format=fmt, stream=sys.stderr)
