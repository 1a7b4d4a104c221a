"""``bn-decay-probe doctor PATH``: diagnose the batch norm in a checkpoint from the shell.

Exit status: 0 clean, 1 findings, 2 bad input (one line on stderr). Arguments are validated
before TensorFlow is imported.
"""
from __future__ import annotations

import argparse
from typing import Optional, Sequence

from . import doctor
from .cli_support import Parser, check_writable, fail
from .config import check_decay
from .errors import ProbeConfigError

EXIT_CLEAN, EXIT_FINDINGS = 0, 1


def build_parser(prog: Optional[str] = None) -> argparse.ArgumentParser:
    parser = Parser(prog=prog, description=(
        "Diagnose batch norm's moving statistics in a TF1 checkpoint: never updated, unshared "
        "train/test copies, bad variance, not converged. Exit 0 when clean, 1 with findings, "
        "2 on bad input."))
    parser.add_argument("path", metavar="PATH",
                        help="checkpoint prefix (model.ckpt-1000), one of its files, or a "
                             "directory (its latest checkpoint)")
    parser.add_argument("--decay", type=float, metavar="D",
                        help="the layers' decay (momentum), to check convergence against "
                             "global_step; a checkpoint does not record it")
    parser.add_argument("--threshold", type=float, default=doctor.DEFAULT_THRESHOLD, metavar="T",
                        help="largest weight decay**global_step left on the initial values "
                             "(default %g, about three time constants)"
                             % doctor.DEFAULT_THRESHOLD)
    parser.add_argument("--json", metavar="PATH|-",
                        help="also write the diagnosis as JSON to PATH; '-' writes only JSON "
                             "to stdout")
    return parser


def main(argv: Optional[Sequence[str]] = None, prog: Optional[str] = None) -> int:
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    try:
        decay = None if args.decay is None else check_decay(args.decay)
        threshold = doctor.check_threshold(args.threshold)
        if args.json not in (None, "-"):
            check_writable(args.json)
    except ProbeConfigError as exc:
        return fail(parser.prog, str(exc))

    from . import backend  # does not import TensorFlow yet

    backend.silence_native_logs()
    try:
        diagnosis = doctor.diagnose_checkpoint(args.path, decay=decay, threshold=threshold)
    except (ProbeConfigError, backend.BackendUnavailableError) as exc:
        return fail(parser.prog, str(exc))

    from .report import to_json

    document = to_json(diagnosis.to_dict())
    if args.json == "-":
        print(document)
    else:
        print(doctor.render_diagnosis(diagnosis))
        if args.json:
            with open(args.json, "w") as handle:
                handle.write(document + "\n")
    return EXIT_CLEAN if diagnosis.clean else EXIT_FINDINGS
