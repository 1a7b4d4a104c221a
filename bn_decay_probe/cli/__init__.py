"""Command line: ``run_experiment.py`` / ``bn-decay-probe`` / ``python -m bn_decay_probe``, and
its subcommands ``doctor``, ``repair`` and ``port``.

Each command is a module here with ``build_parser(prog)`` and ``run(args, parser, out)``, which
validates its arguments before TensorFlow is imported and raises a BnDecayProbeError for bad
input. :func:`main` is the one place that turns what a command ends with into an exit status:
its result, an error's one line on stderr and ``exit_code``, a reader that closed the pipe
(141, or the command's verdict), Ctrl-C (one line, 130). A new subcommand is a module here and
one line in ``SUBCOMMANDS``.
"""
from __future__ import annotations

import importlib
import os
import sys
from typing import Any, Optional, Sequence

from .. import interrupts
from ..errors import EXIT_BROKEN_PIPE, EXIT_INTERRUPTED, BnDecayProbeError
from .output import Output
from .parser import nearest

# name -> module with build_parser(prog) and run(args, parser, out); VERDICT = True in a module
# whose exit status is a verdict that a closed pipe does not change.
SUBCOMMANDS = {"doctor": ".doctor", "repair": ".repair", "port": ".port"}

__all__ = ["main", "SUBCOMMANDS"]


def main(argv: Optional[Sequence[str]] = None, prog: Optional[str] = None) -> Any:
    """Runs the command line; returns the exit status (argparse's too, rather than raising
    SystemExit)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    out = Output()
    command: Any = None
    parser: Any = None
    status: Any = EXIT_BROKEN_PIPE  # if the pipe closes before the command ends
    try:
        try:
            interrupts.loaded()
            # (imported here, so that Ctrl-C while it loads is answered below)
            command = importlib.import_module(".probe", __package__)
            parser = command.build_parser(prog)
            if argv[:1] and argv[0] in SUBCOMMANDS:
                command = importlib.import_module(SUBCOMMANDS[argv[0]], __package__)
                parser, argv = command.build_parser("%s %s" % (parser.prog, argv[0])), argv[1:]
            else:
                _check_command(parser, argv)
                parser.usage = _usage(parser)
            args = parser.parse_args(argv)
            status = command.run(args, parser, out)
        except SystemExit as exit:  # argparse after --help, --version or a usage error
            status = exit.code
        except BnDecayProbeError as exc:
            print("%s: error: %s" % (_prog(parser, prog), exc), file=sys.stderr)
            status = exc.exit_code
        sys.stdout.flush()  # a broken pipe shows here, not at exit where it cannot be caught
    except BrokenPipeError:
        out.close()
    except KeyboardInterrupt:
        # Ctrl-C wherever it lands, TensorFlow's work included (TF lets Python's handler raise
        # it once its op returns): one line; files are written whole or not at all.
        print("%s: interrupted" % _prog(parser, prog), file=sys.stderr)
        return EXIT_INTERRUPTED
    if out.closed and not getattr(command, "VERDICT", False):
        return EXIT_BROKEN_PIPE  # as a shell reports a filter that SIGPIPE ended
    return status


def _prog(parser: Any, prog: Optional[str]) -> str:
    if parser is not None:
        return parser.prog
    return prog or os.path.basename(sys.argv[0] or "bn-decay-probe")


def _check_command(parser: Any, argv: Sequence[str]) -> None:
    """The probe takes options only: a first word that is no option is a mistyped command."""
    if not argv or argv[0].startswith("-"):
        return
    close = nearest(argv[0], SUBCOMMANDS)
    parser.error("unknown command %r%s (commands: %s; the probe itself takes options only)"
                 % (argv[0], "; did you mean %s?" % " or ".join(close) if close else "",
                    ", ".join(SUBCOMMANDS)))


def _usage(parser: Any) -> str:
    """argparse's usage line, then one line per subcommand (from its own parser)."""
    lines = [parser.format_usage()[len("usage: "):].rstrip()]
    for name, module in SUBCOMMANDS.items():
        sub = importlib.import_module(module, __package__).build_parser(
            "%s %s" % (parser.prog, name))
        lines.append(sub.format_usage()[len("usage: "):].rstrip())
    return "\n       ".join(line.replace("%", "%%") for line in lines)
