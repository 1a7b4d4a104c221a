"""Command line: ``run_experiment.py`` / ``bn-decay-probe`` / ``python -m bn_decay_probe``.

Arguments are validated before TensorFlow is imported, so bad input fails in milliseconds with
one line on stderr and exit status 2.
"""
from __future__ import annotations

import argparse
import os
import sys
import warnings
from typing import List, Optional, Sequence, Tuple

from . import __version__
from .config import DEFAULT_EPSILON, DEVICES, ProbeConfig
from .errors import DeviceFallbackWarning, ProbeConfigError

EXIT_BAD_INPUT = 2
DEFAULT_DECAYS = (0.0, 1.0)  # the seed experiment's two values


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # One line instead of argparse's usage block; --help has the usage.
        self.exit(EXIT_BAD_INPUT, "%s: error: %s (see --help)\n" % (self.prog, message))


def _shape(text: str) -> Tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            "must be 4 positive integers N,H,W,C such as 1,4,4,1, got %r" % text) from None


def build_parser(prog: Optional[str] = None) -> argparse.ArgumentParser:
    parser = _Parser(prog=prog, description=(
        "Run tf.contrib.layers.batch_norm in train then test mode for each decay and show how "
        "moving_mean and moving_variance change."))
    parser.add_argument("--decay", type=float, action="append", metavar="D",
                        help="moving-average decay in [0, 1]; repeat for several "
                             "(default: 0 and 1, the seed experiment's two values)")
    fused = parser.add_mutually_exclusive_group()
    fused.add_argument("--fused", dest="fused", action="store_true", default=None,
                       help="force the fused kernel (TF's default for 4-D inputs)")
    fused.add_argument("--no-fused", dest="fused", action="store_false",
                       help="force the non-fused path (tf.nn.moments)")
    parser.add_argument("--steps", type=int, default=1, metavar="K",
                        help="train runs before the test run (default 1)")
    parser.add_argument("--seed", type=int, default=0, metavar="S",
                        help="seed of the uniform(0, 255) input (default 0)")
    parser.add_argument("--shape", type=_shape, default=None, metavar="N,H,W,C",
                        help="input shape (default 1,4,4,1)")
    parser.add_argument("--epsilon", type=float, default=DEFAULT_EPSILON, metavar="E",
                        help="added to the variance (default %g)" % DEFAULT_EPSILON)
    parser.add_argument("--device", default="auto", metavar="|".join(DEVICES),
                        help="auto: GPU if TensorFlow sees one, else CPU (default); cpu; gpu")
    parser.add_argument("--json", metavar="PATH|-",
                        help="also write every measurement as JSON to PATH; '-' writes only "
                             "JSON to stdout")
    parser.add_argument("--verbose", action="store_true",
                        help="show TensorFlow's own log lines and deprecation warnings")
    parser.add_argument("--version", action="version", version="%(prog)s " + __version__)
    return parser


def _check_writable(path: str) -> None:
    """Fails now, before minutes of work, if the JSON cannot be written later."""
    if os.path.isdir(path):
        raise ProbeConfigError("--json %s is a directory; give a file path or -" % path)
    existed = os.path.exists(path)
    try:
        open(path, "a").close()
    except OSError as exc:
        raise ProbeConfigError("--json %s cannot be written: %s" % (path, exc.strerror)) from None
    if not existed:
        os.remove(path)


def _fail(prog: str, message: str) -> int:
    print("%s: error: %s" % (prog, message), file=sys.stderr)
    return EXIT_BAD_INPUT


def main(argv: Optional[Sequence[str]] = None, prog: Optional[str] = None) -> int:
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    try:
        configs = [ProbeConfig.create(decay=decay, shape=args.shape, seed=args.seed,
                                      fused=args.fused, steps=args.steps, epsilon=args.epsilon,
                                      device=args.device)
                   for decay in (args.decay or DEFAULT_DECAYS)]
        if args.json not in (None, "-"):
            _check_writable(args.json)
    except ProbeConfigError as exc:
        return _fail(parser.prog, str(exc))

    from . import backend  # still no TensorFlow: that comes with the first probe

    backend.set_verbose(args.verbose)
    if not args.verbose:
        backend.silence_native_logs()
    from . import report, runner

    results = []
    notices: List[str] = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeviceFallbackWarning)  # printed below, once
            for config in configs:
                results.append(runner.run(config))
                notice = results[-1].device.notice
                if notice and notice not in notices:
                    notices.append(notice)
                    print("note: %s" % notice, file=sys.stderr)
    except (ProbeConfigError, backend.BackendUnavailableError) as exc:
        return _fail(parser.prog, str(exc))

    if args.json == "-":
        print(report.to_json(results))
        return 0
    print(("\n\n" + "=" * 72 + "\n\n").join(report.render_text(r) for r in results))
    if args.json:
        with open(args.json, "w") as handle:
            handle.write(report.to_json(results) + "\n")
    return 0
