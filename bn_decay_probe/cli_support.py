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


def check_writable(path: str, flag: str = "--json") -> None:
    """Fails now, before TensorFlow loads and work starts, if ``flag PATH`` cannot be written
    later. Only --json also takes '-' (stdout)."""
    alternative = " or -" if flag == "--json" else ""
    if not path:
        raise ProbeConfigError("%s needs a file path%s, got ''" % (flag, alternative))
    if os.path.isdir(path):
        raise ProbeConfigError("%s %s is a directory; give a file path%s"
                               % (flag, path, alternative))
    existed = os.path.exists(path)
    try:
        open(path, "a").close()
    except OSError as exc:
        raise ProbeConfigError("%s %s cannot be written: %s"
                               % (flag, path, exc.strerror)) from None
    if not existed:
        os.remove(path)


def fail(prog: str, message: str) -> int:
    print("%s: error: %s" % (prog, message), file=sys.stderr)
    return EXIT_BAD_INPUT
