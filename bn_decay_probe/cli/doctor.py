"""``bn-decay-probe doctor PATH``: diagnose the batch norm in a checkpoint, SavedModel or Keras
file from the shell.

Exit status: 0 clean (every check made, no finding), 1 findings, 2 bad input (one line on
stderr), 3 incomplete (no finding, but something could not be checked: the verdict line and the
"not checked:" lines say what and why). Arguments are validated before TensorFlow is imported.
"""
from __future__ import annotations

import argparse
from typing import Optional

from .. import doctor
from ..errors import EXIT_FINDINGS, EXIT_INCOMPLETE, EXIT_OK
from ..probe.config import check_decay
from .output import Output, check_writable
from .parser import Parser, add_json_option

EXIT_STATUS = {"clean": EXIT_OK, "findings": EXIT_FINDINGS, "incomplete": EXIT_INCOMPLETE}
# The exit status is the verdict: a reader that closed the pipe early does not change it.
VERDICT = True


def build_parser(prog: Optional[str] = None) -> argparse.ArgumentParser:
    parser = Parser(prog=prog, description=(
        "Diagnose batch norm's moving statistics in a TF1 checkpoint, a TF 2 object checkpoint, "
        "a SavedModel or a Keras .keras / .weights.h5 / .h5 file: never updated, trained in "
        "inference mode (a Keras custom loop without training=True, batch norm frozen before it "
        "trained), unshared train/test copies, bad variance, not converged. Exit 0 when clean, "
        "1 with findings, 2 on bad input, 3 when no finding but something could not be checked "
        "(the output says what)."))
    parser.add_argument("path", metavar="PATH",
                        help="checkpoint prefix (model.ckpt-1000), one of its files, or a "
                             "directory (its latest checkpoint); a SavedModel directory; a "
                             "Keras .keras, .weights.h5 or .h5 file")
    parser.add_argument("--decay", type=float, metavar="D",
                        help="the layers' decay (momentum) for the convergence check; default: "
                             "each layer's own, from the .meta graph beside the checkpoint or "
                             "the Keras model's config")
    parser.add_argument("--steps", type=int, metavar="N",
                        help="the number of train steps that ran; default: the step counter "
                             "saved (global_step, a Keras optimizer's iterations)")
    parser.add_argument("--threshold", type=float, default=doctor.DEFAULT_THRESHOLD, metavar="T",
                        help="largest weight decay**steps left on the initial values "
                             "(default %g, about three time constants)"
                             % doctor.DEFAULT_THRESHOLD)
    parser.add_argument("--verbose", action="store_true",
                        help="also print the per-layer table and every finding's detail")
    add_json_option(parser, "the diagnosis (every per-layer detail)")
    return parser


def run(args: argparse.Namespace, parser: argparse.ArgumentParser, out: Output) -> int:
    """The doctor command with its parsed ``args``; raises BnDecayProbeError on bad input."""
    decay = None if args.decay is None else check_decay(args.decay)
    steps = doctor.check_steps(args.steps)
    threshold = doctor.check_threshold(args.threshold)
    if args.json not in (None, "-"):
        check_writable(args.json)

    from .. import backend  # does not import TensorFlow yet

    backend.silence_native_logs()
    diagnosis = doctor.diagnose_checkpoint(args.path, decay=decay, threshold=threshold,
                                           steps=steps)
    if args.json:
        out.json(diagnosis.to_dict(), args.json)
    if args.json != "-":
        out.emit(doctor.render_diagnosis(diagnosis, verbose=args.verbose))
    return EXIT_STATUS[diagnosis.status]
