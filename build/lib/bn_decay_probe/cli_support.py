"""What the probe and doctor command lines share: one-line errors and exit status 2."""
from __future__ import annotations

import argparse
import os
import sys

from .errors import ProbeConfigError

EXIT_BAD_INPUT = 2


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # One line instead of argparse's usage block; --help has the usage.
        self.exit(EXIT_BAD_INPUT, "%s: error: %s (see --help)\n" % (self.prog, message))


def check_writable(path: str) -> None:
    """Fails now, before TensorFlow loads and work starts, if ``--json PATH`` cannot be
    written later."""
    if os.path.isdir(path):
        raise ProbeConfigError("--json %s is a directory; give a file path or -" % path)
    existed = os.path.exists(path)
    try:
        open(path, "a").close()
    except OSError as exc:
        raise ProbeConfigError("--json %s cannot be written: %s" % (path, exc.strerror)) from None
    if not existed:
        os.remove(path)


def fail(prog: str, message: str) -> int:
    print("%s: error: %s" % (prog, message), file=sys.stderr)
    return EXIT_BAD_INPUT
