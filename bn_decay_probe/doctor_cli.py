"""``bn-decay-probe doctor PATH``: diagnose the batch norm in a checkpoint from the shell.

Exit status: 0 clean (every check made, no finding), 1 findings, 2 bad input (one line on
stderr), 3 incomplete (no finding, but something could not be checked: the verdict line and the
"not checked:" lines say what and why). Arguments are validated before TensorFlow is imported.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence

from . import doctor
from .cli_support import Parser, check_writable, fail
from .config import check_decay
from .errors import ProbeConfigError

EXIT_CLEAN, EXIT_FINDINGS, EXIT_INCOMPLETE = 0, 1, 3
EXIT_STATUS = {"clean": EXIT_CLEAN, "findings": EXIT_FINDINGS, "incomplete": EXIT_INCOMPLETE}


def build_parser(prog: Optional[str] = None) -> argparse.ArgumentParser:
    parser = Parser(prog=prog, description=(
        "Diagnose batch norm's moving statistics in a TF1 checkpoint: never updated, trained in "
        "inference mode, unshared train/test copies, bad variance, not converged. Exit 0 when "
        "clean, 1 with findings, 2 on bad input, 3 when no finding but something could not be "
        "checked (the output says what)."))
    parser.add_argument("path", metavar="PATH",
                        help="checkpoint prefix (model.ckpt-1000), one of its files, or a "
                             "directory (its latest checkpoint)")
    parser.add_argument("--decay", type=float, metavar="D",
                        help="the layers' decay (momentum) for the convergence check; default: "
                             "each layer's own, from the .meta graph beside the checkpoint")
    parser.add_argument("--steps", type=int, metavar="N",
                        help="the number of train steps that ran; default: the checkpoint's "
                             "step counter (global_step, a Keras optimizer's iter)")
    parser.add_argument("--threshold", type=float, default=doctor.DEFAULT_THRESHOLD, metavar="T",
                        help="largest weight decay**steps left on the initial values "
                             "(default %g, about three time constants)"
                             % doctor.DEFAULT_THRESHOLD)
    parser.add_argument("--verbose", action="store_true",
                        help="also print the per-layer table and every finding's detail")
    parser.add_argument("--json", metavar="PATH|-",
                        help="also write the diagnosis as JSON (every per-layer detail) to "
                             "PATH; '-' writes only JSON to stdout")
    return parser


def main(argv: Optional[Sequence[str]] = None, prog: Optional[str] = None) -> int:
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    try:
        decay = None if args.decay is None else check_decay(args.decay)
        steps = doctor.check_steps(args.steps)
        threshold = doctor.check_threshold(args.threshold)
        if args.json not in (None, "-"):
            check_writable(args.json)
    except ProbeConfigError as exc:
        return fail(parser.prog, str(exc))

    from . import backend  # does not import TensorFlow yet

    backend.silence_native_logs()
    try:
        diagnosis = doctor.diagnose_checkpoint(args.path, decay=decay, threshold=threshold,
                                               steps=steps)
    except (ProbeConfigError, backend.BackendUnavailableError) as exc:
        return fail(parser.prog, str(exc))

    from .report import to_json

    document = to_json(diagnosis.to_dict())
    if args.json not in (None, "-"):
        with open(args.json, "w") as handle:
            handle.write(document + "\n")
    _print(document if args.json == "-" else
           doctor.render_diagnosis(diagnosis, verbose=args.verbose))
    return EXIT_STATUS[diagnosis.status]


def _print(text: str) -> None:
    """Prints; a reader that closed the pipe early (``| head``) is no error of the diagnosis."""
    try:
        print(text)
        sys.stdout.flush()
    except BrokenPipeError:
        # Python flushes stdout again at exit: point it at /dev/null so that fails quietly too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
