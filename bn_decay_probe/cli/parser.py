"""The parser every command uses: argparse with a usage error in one line (exit status 2)."""
from __future__ import annotations

import argparse

from ..errors import EXIT_BAD_INPUT


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # One line instead of argparse's usage block; --help has the usage.
        self.exit(EXIT_BAD_INPUT, "%s: error: %s (see --help)\n" % (self.prog, message))


def add_json_option(parser: argparse.ArgumentParser, what: str) -> None:
    """--json PATH|-, the same in every command."""
    parser.add_argument("--json", metavar="PATH|-",
                        help="also write %s as JSON to PATH; '-' writes only JSON to stdout"
                             % what)
