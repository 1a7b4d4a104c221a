"""The parser every command uses: argparse with a usage error in one line (exit status 2), an
unknown option answered with the nearest ones the command has."""
from __future__ import annotations

import argparse
import difflib
import re
from typing import Iterable, List

from ..errors import EXIT_BAD_INPUT

_UNRECOGNIZED = re.compile(r"^unrecognized arguments: (.*)$")


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # One line instead of argparse's usage block; --help has the usage.
        unrecognized = _UNRECOGNIZED.match(message)
        if unrecognized:
            message += suggestions(unrecognized.group(1).split(), self.option_names())
        self.exit(EXIT_BAD_INPUT, "%s: error: %s (see --help)\n" % (self.prog, message))

    def option_names(self) -> List[str]:
        return [name for action in self._actions for name in action.option_strings]


def nearest(word: str, names: Iterable[str]) -> List[str]:
    """The names closest to a mistyped ``word``, best first: difflib's ratio 0.75 and up (a
    letter swapped, left out or doubled; "--bogus" is not "--verbose", at 0.625)."""
    return difflib.get_close_matches(word, list(names), n=2, cutoff=0.75)


def suggestions(words: Iterable[str], names: Iterable[str]) -> str:
    """"; did you mean --decay?" for the options among ``words`` that resemble ``names``."""
    names = list(names)
    hints = []
    for word in words:
        option = word.split("=", 1)[0]
        close = nearest(option, names) if option.startswith("-") else []
        if close:
            hints.append("%s: did you mean %s?" % (option, " or ".join(close)))
    return "; " + "; ".join(hints) if hints else ""


def add_json_option(parser: argparse.ArgumentParser, what: str) -> None:
    """--json PATH|-, the same in every command."""
    parser.add_argument("--json", metavar="PATH|-",
                        help="also write %s as JSON to PATH; '-' writes only JSON to stdout"
                             % what)
