"""The probe command (``run_experiment.py --decay D`` / ``bn-decay-probe --decay D``): run a
batch-norm layer in train then test mode for each decay and report the moving statistics.

Arguments are validated before TensorFlow is imported, so bad input fails in milliseconds with
one line on stderr and exit status 2. The decays run through their engine's run_decays (the TF
graph APIs: one graph for all of them, each train step one Session.run), whatever the settings.
"""
from __future__ import annotations

import argparse
import sys
import warnings
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .. import progress
from .._version import __version__
from ..errors import EXIT_OK, DeviceFallbackWarning, ProbeConfigError, first_line
from ..probe import engines
from ..probe.config import (APIS, DATA_FORMATS, DEFAULT_EPSILON, DEFAULT_SHAPE, DEVICES, UPDATES,
                            ProbeConfig, check_decay, check_device, check_seed, check_shape,
                            check_tol, seeded_inputs)
from ..probe.frameworks import FRAMEWORKS
from ..probe.matrix import MATRIX_DECAYS, MATRIX_SHAPE, MATRIX_TOL
from ..probe.sweep_result import SweepResult
from ..report import plot
from ..verbosity import set_verbosity
from .output import Output, check_writable
from .parser import Parser, add_json_option

DEFAULT_DECAYS = (0.0, 1.0)  # the blog experiment's two values


def _shape(text: str) -> Tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            "must be 4 positive integers N,H,W,C such as 1,4,4,1, got %r" % text) from None


def _decay_range(text: str) -> Tuple[float, ...]:
    """--decays START:STOP:NUM -> numpy.linspace(START, STOP, NUM)."""
    parts = text.split(":")
    try:
        start, stop, num = float(parts[0]), float(parts[1]), int(parts[2])
    except (ValueError, IndexError):
        raise argparse.ArgumentTypeError("must be START:STOP:NUM such as 0.9:0.999:50, got %r"
                                         % text) from None
    if len(parts) != 3 or not (0 <= start <= 1 and 0 <= stop <= 1 and num >= 1):
        raise argparse.ArgumentTypeError("must be START:STOP:NUM with START and STOP in [0, 1] "
                                         "and NUM >= 1, got %r" % text)
    return tuple(float(d) for d in np.linspace(start, stop, num))


def build_parser(prog: Optional[str] = None) -> argparse.ArgumentParser:
    parser = Parser(prog=prog, description=(
        "Run a batch-norm layer in train then test mode for each decay and show how "
        "moving_mean and moving_variance change."), epilog=(
        "The decays share one graph, each train step one run for all of them, whatever the "
        "settings. Subcommands: 'doctor PATH' diagnoses the batch norm in your own checkpoint, "
        "'repair PATH --data FILE --out PREFIX' recomputes its moving statistics from data (see "
        "'doctor --help', 'repair --help')."))
    decays = parser.add_mutually_exclusive_group()
    decays.add_argument("--decay", type=float, action="append", metavar="D",
                        help="moving-average decay in [0, 1]; repeat for several, one report "
                             "each (default: 0 and 1, the blog experiment's two values; with "
                             "--matrix, the decays of its steps columns, default %s)"
                             % ", ".join(map(str, MATRIX_DECAYS)))
    decays.add_argument("--decays", type=_decay_range, metavar="START:STOP:NUM",
                        help="NUM evenly spaced decays from START to STOP, reported as one "
                             "table with a row per decay")
    fused = parser.add_mutually_exclusive_group()
    fused.add_argument("--fused", dest="fused", action="store_true", default=None,
                       help="force the fused kernel (TF's default for 4-D inputs)")
    fused.add_argument("--no-fused", dest="fused", action="store_false", default=None,
                       help="force the non-fused path (tf.nn.moments)")
    parser.add_argument("--steps", type=int, default=None, metavar="K",
                        help="train runs before the test run (default 1); with --batches, "
                             "passes over the batches")
    parser.add_argument("--seed", type=int, default=0, metavar="S",
                        help="seed of the uniform(0, 255) input (default 0)")
    parser.add_argument("--shape", type=_shape, default=None, metavar="N,H,W,C",
                        help="input shape (default 1,4,4,1; %s with --matrix)"
                             % ",".join(map(str, MATRIX_SHAPE)))
    parser.add_argument("--epsilon", type=float, default=DEFAULT_EPSILON, metavar="E",
                        help="added to the variance (default %g)" % DEFAULT_EPSILON)
    parser.add_argument("--device", default="auto", metavar="|".join(DEVICES),
                        help="auto: GPU if TensorFlow sees one, else CPU (default); cpu; gpu")
    parser.add_argument("--api", default=None, metavar="|".join(APIS),
                        help="contrib: tf.contrib.layers.batch_norm (default); layers: "
                             "tf.layers.batch_normalization; keras: tf.keras.layers."
                             "BatchNormalization; nn: tf.nn.fused_batch_norm / tf.nn.moments; "
                             "keras3: Keras 3 on TensorFlow; other frameworks (extras [torch], "
                             "[jax]): torch (BatchNorm2d, momentum = 1 - decay), "
                             "torch-cumulative (momentum=None), flax, haiku, keras3-jax, "
                             "keras3-torch")
    parser.add_argument("--updates", default=None, metavar="|".join(UPDATES),
                        help="inplace: updates run with the train output (default); update_ops:"
                             " UPDATE_OPS run with the train step; forgotten: never run")
    parser.add_argument("--data-format", default=None, metavar="|".join(DATA_FORMATS),
                        help="layout in the graph (default NHWC); inputs stay NHWC")
    parser.add_argument("--zero-debias", action="store_true",
                        help="contrib's zero_debias_moving_mean")
    parser.add_argument("--no-trainable", dest="trainable", action="store_false",
                        help="trainable=False for the contrib/layers/keras layer (in TF 2.x "
                             "tf.keras this also means inference mode)")
    parser.add_argument("--unshared", action="store_true",
                        help="build the branches the way that gives each its own variables")
    parser.add_argument("--batches", type=_batches, default=None, metavar="K|FILE.npy",
                        help="train on K batches of --shape drawn from --seed + 1, or on the "
                             "batches [B, N, H, W, C] in FILE.npy; the test input stays one")
    parser.add_argument("--tol", type=float, default=None, metavar="T",
                        help="tolerance of 'test output within T of train output' for steps "
                             "to converge (default %g)" % MATRIX_TOL)
    parser.add_argument("--matrix", action="store_true",
                        help="measure the semantics matrix (api x fused x updates) instead")
    add_json_option(parser, "every measurement")
    parser.add_argument("--csv", metavar="PATH",
                        help="also write every decay's moving statistics after each train step "
                             "(with the rule's and the test/train gap) as CSV to PATH")
    parser.add_argument("--plot", metavar="PATH.png",
                        help="also draw the moving statistics and the test/train gap against "
                             "train steps and steps to converge against decay to PATH (.png, "
                             ".pdf or .svg; needs matplotlib: pip install "
                             "'bn-decay-probe[plot]')")
    parser.add_argument("--quiet", action="store_true",
                        help="no progress bar and no notes on stderr")
    parser.add_argument("--verbose", action="store_true",
                        help="show TensorFlow's own log lines and deprecation warnings")
    parser.add_argument("--version", action="version", version="%(prog)s " + __version__)
    return parser


def _batches(text: str) -> Any:
    if text.isdigit():
        return int(text)
    if not text.endswith(".npy"):
        raise argparse.ArgumentTypeError("must be a count K or a FILE.npy, got %r" % text)
    return text


def _load_batches(value: Any, shape: Optional[Tuple[int, ...]], seed: int) -> Any:
    """--batches K draws K batches (from the next seed, so they differ from the test input);
    --batches FILE.npy loads them."""
    if isinstance(value, int):
        if value < 1:
            raise ProbeConfigError("--batches must be a count >= 1 or a FILE.npy, got %d" % value)
        return seeded_inputs((value,) + check_shape(shape or DEFAULT_SHAPE),
                             (check_seed(seed) + 1) % 2 ** 32)
    try:
        with open(value, "rb") as handle:
            # np.load takes anything else for a pickle and says so, which misleads here.
            npy = handle.read(6) == b"\x93NUMPY"
            handle.seek(0)
            loaded = np.load(handle, allow_pickle=False) if npy else None
    except Exception as exc:  # pylint: disable=broad-except  (a damaged header: numpy raises
        # ValueError, SyntaxError, tokenize's TokenError, ...)
        raise ProbeConfigError("--batches %s cannot be read: %s"
                               % (value, getattr(exc, "strerror", None) or
                                  first_line(exc))) from None
    if loaded is None:
        raise ProbeConfigError("--batches %s is not a .npy file (numpy.save writes one)" % value)
    return loaded


# Options that choose one probe; --matrix measures its own grid of them (--decay there picks
# the decays of its steps-to-converge columns).
_PROBE_ONLY = ("fused", "steps", "api", "updates", "data_format", "zero_debias",
               "unshared", "batches", "epsilon", "trainable")


def run(args: argparse.Namespace, parser: argparse.ArgumentParser, out: Output) -> int:
    """The probe command with its parsed ``args``; raises BnDecayProbeError on bad input
    (checked before TensorFlow is imported)."""
    given_decays = args.decays or args.decay
    if args.tol is not None:
        check_tol(args.tol, "--tol")
    if args.matrix:
        flags = {"fused": "--fused/--no-fused", "trainable": "--no-trainable"}
        given = [flags.get(name, "--" + name.replace("_", "-"))
                 for name in _PROBE_ONLY + ("csv", "plot")
                 if getattr(args, name) != parser.get_default(name)]
        if given:
            raise ProbeConfigError("--matrix measures its own grid of api, fused and "
                                   "updates; it cannot be combined with %s" % ", ".join(given))
        check_device(args.device)
        check_seed(args.seed)
        shape = check_shape(args.shape or MATRIX_SHAPE)
        decays = tuple(check_decay(d) for d in (given_decays or MATRIX_DECAYS))
    else:
        decays = tuple(check_decay(d) for d in (given_decays or DEFAULT_DECAYS))
        batches = None if args.batches is None else \
            _load_batches(args.batches, args.shape, args.seed)
        config = ProbeConfig.create(
            decay=decays[0], shape=args.shape, seed=args.seed, fused=args.fused,
            steps=1 if args.steps is None else args.steps, epsilon=args.epsilon,
            device=args.device, api=args.api or "contrib",
            updates=args.updates or "inplace", data_format=args.data_format or "NHWC",
            zero_debias=args.zero_debias, share_variables=not args.unshared,
            batches=batches, trainable=args.trainable)
        if args.plot is not None:
            _check_plot(args.plot, batches)
    if args.json not in (None, "-"):
        check_writable(args.json, "--json")
    for flag, path in (("--csv", args.csv), ("--plot", args.plot)):
        if path is not None:
            check_writable(path, flag)

    from .. import report  # still no TensorFlow: that comes with the first probe

    set_verbosity("verbose" if args.verbose else "quiet" if args.quiet else "default")
    tol = MATRIX_TOL if args.tol is None else args.tol
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeviceFallbackWarning)  # printed below, once
        if args.matrix:
            document, text = _matrix(decays, shape, args.seed, args.device, tol, args.quiet)
        else:
            swept = _measure(config, decays, progress.wanted(args.quiet))
            if not args.quiet:
                _note_once([], swept[0].device.notice)
            # Each only when it is written: for thousands of decays either takes seconds.
            document = report.json_document(swept.results, tol) if args.json else None
            text = "" if args.json == "-" else report.render_sweep(swept, tol) \
                if args.decays else \
                ("\n\n" + "=" * 72 + "\n\n").join(report.render_text(r, tol) for r in swept)
            if args.csv:
                out.write_file(args.csv, swept.to_csv(), "--csv")
            if args.plot:
                swept.plot(args.plot, tol=tol)
    if args.json:
        out.json(document, args.json)
    if args.json != "-":
        out.emit(text)
    return EXIT_OK


def _check_plot(path: str, batches: Any) -> None:
    if not path.lower().endswith(plot.FORMATS):
        raise ProbeConfigError("--plot %s must end in %s" % (path, ", ".join(plot.FORMATS)))
    if batches is not None:
        raise ProbeConfigError("--plot compares the train and test outputs of one input; it "
                               "cannot be combined with --batches")
    if not plot.available():
        raise ProbeConfigError(plot.MISSING)


def _note_once(notices: List[str], notice: Optional[str]) -> None:
    if notice and notice not in notices:
        notices.append(notice)
        print("note: %s" % notice, file=sys.stderr)


def _measure(config: ProbeConfig, decays: Sequence[float], show_progress: bool) -> SweepResult:
    """Every decay of ``decays`` with ``config``, by its engine (the TF graph APIs: one graph
    for all of them)."""
    from .. import backend

    if config.api not in FRAMEWORKS:  # the other frameworks need no TensorFlow
        backend.tensorflow()  # imported before the bar starts, so its first ETA is the run's
    with progress.bar(len(decays), show_progress) as update:
        return SweepResult(engines.choose(config).run_decays(config, decays, update))


def _matrix(decays: Sequence[float], shape: Tuple[int, ...], seed: int, device: str,
            tol: float, quiet: bool) -> Tuple[Dict[str, Any], str]:
    from .. import backend, report
    from ..probe import devices
    from ..probe.matrix import semantics_matrix

    if not quiet:
        _note_once([], devices.resolve(device, backend.visible_gpus()).notice)
    show_row = None
    if sys.stderr.isatty() and not quiet:
        def show_row(row: str) -> None:
            print("\r\033[Kmeasuring %s" % row, end="", file=sys.stderr, flush=True)
    matrix = semantics_matrix(decays, tol, shape, seed, device, show_row)
    if show_row:
        print("\r\033[K", end="", file=sys.stderr, flush=True)
    return {"bn_decay_probe": __version__, "matrix": matrix.to_dict()}, \
        report.render_matrix(matrix)
