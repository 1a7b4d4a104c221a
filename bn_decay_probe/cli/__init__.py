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
import sys
from typing import Any, Optional, Sequence

from ..errors import EXIT_BROKEN_PIPE, EXIT_INTERRUPTED, BnDecayProbeError
from . import probe
from .output import Output

# name -> module with build_parser(prog) and run(args, parser, out); VERDICT = True in a module
# whose exit status is a verdict that a closed pipe does not change.
SUBCOMMANDS = {"doctor": ".doctor", "repair": ".repair", "port": ".port"}

__all__ = ["main", "SUBCOMMANDS"]


def main(argv: Optional[Sequence[str]] = None, prog: Optional[str] = None) -> Any:
    """Runs the command line; returns the exit status (argparse's too, rather than raising
    SystemExit)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    out = Output()
    parser = probe.build_parser(prog)
    command: Any = probe
    if argv[:1] and argv[0] in SUBCOMMANDS:
        command = importlib.import_module(SUBCOMMANDS[argv[0]], __package__)
        parser, argv = command.build_parser("%s %s" % (parser.prog, argv[0])), argv[1:]
    else:
        parser.usage = _usage(parser)
    status: Any = EXIT_BROKEN_PIPE  # if the pipe closes before the command ends
    try:
        try:
            args = parser.parse_args(argv)
            status = command.run(args, parser, out)
        except SystemExit as exit:  # argparse after --help, --version or a usage error
            status = exit.code
        except BnDecayProbeError as exc:
            print("%s: error: %s" % (parser.prog, exc), file=sys.stderr)
            status = exc.exit_code
        sys.stdout.flush()  # a broken pipe shows here, not at exit where it cannot be caught
    except BrokenPipeError:
        out.close()
    except KeyboardInterrupt:
        print("%s: interrupted" % parser.prog, file=sys.stderr)
        return EXIT_INTERRUPTED
    if out.closed and not getattr(command, "VERDICT", False):
        return EXIT_BROKEN_PIPE  # as a shell reports a filter that SIGPIPE ended
    return status


def _usage(parser: Any) -> str:
    """argparse's usage line, then one line per subcommand (from its own parser)."""
    lines = [parser.format_usage()[len("usage: "):].rstrip()]
    for name, module in SUBCOMMANDS.items():
        sub = importlib.import_module(module, __package__).build_parser(
            "%s %s" % (parser.prog, name))
        lines.append(sub.format_usage()[len("usage: "):].rstrip())
    return "\n       ".join(line.replace("%", "%%") for line in lines)
