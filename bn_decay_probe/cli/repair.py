"""``bn-decay-probe repair CHECKPOINT --data FILE --out PREFIX``: recalibrate a checkpoint's
batch-norm statistics from data and write a repaired copy; ``bn-decay-probe repair MODEL.keras
--data FILE|DIR --out FIXED.keras`` does the same for a Keras ``.keras`` or ``.h5`` model file.

Exit status: 0 when the copy is written, 2 on bad input (one line on stderr; nothing written).
Paths, data headers and numbers are checked before TensorFlow is imported.
"""
from __future__ import annotations

import argparse
from typing import Any, Optional, Tuple

from .. import progress
from ..checkpoints import paths
from ..errors import EXIT_OK, ProbeConfigError
from ..repair import keras_writer
from ..repair.data import DEFAULT_BATCH_SIZE, check_batch_size, open_data
from ..repair.images import ImageFolder, check_preprocess
from ..repair.keras_repair import keras_data, keras_file_kind, no_tensor_names
from .output import Output, check_writable
from .parser import Parser, add_json_option

_FLAGS = ("--input", "--training")


def build_parser(prog: Optional[str] = None) -> argparse.ArgumentParser:
    parser = Parser(prog=prog, description=(
        "Recalibrate the batch-norm moving statistics of a TF1 checkpoint or a Keras .keras / "
        ".h5 model file from data, every weight frozen: the graph of the .meta beside the "
        "checkpoint (or the Keras model) runs with batch norm in training mode over the "
        "batches, each layer's population mean and variance over every value are pooled, and a "
        "copy in which only those statistics differ is written at --out. The input is never "
        "written. Exit 0 when the copy is written, 2 on bad input."))
    parser.add_argument("checkpoint", metavar="CHECKPOINT|MODEL",
                        help="checkpoint prefix (model.ckpt-1000) or one of its files, its "
                             ".meta beside it; or a Keras .keras or .h5 model file")
    parser.add_argument("--data", required=True, metavar="FILE|DIR",
                        help="FILE.npy (split into batches of --batch-size rows), FILE.npz (one "
                             "batch per array) or FILE.npz:NAME (that array, split); for a Keras "
                             "model also DIR, a directory of images resized to the model's "
                             "input (with --preprocess)")
    parser.add_argument("--out", required=True, metavar="PREFIX|FILE",
                        help="checkpoint prefix of the repaired copy (not the input's); for a "
                             "Keras model a file of the same format")
    parser.add_argument("--preprocess", metavar="MODULE:FUNCTION",
                        help="Keras models: applied to each batch, e.g. "
                             "keras.applications.mobilenet_v2:preprocess_input; 'none' for "
                             "images as pixels 0-255 (a directory of images needs one of them)")
    parser.add_argument("--input", metavar="NAME",
                        help="the input tensor (default: the one float placeholder the "
                             "batch-norm layers depend on)")
    parser.add_argument("--training", action="append", metavar="NAME",
                        help="the boolean training switch (default: the one boolean "
                             "placeholder the layers' conds depend on, e.g. Keras's learning "
                             "phase); repeat for several")
    parser.add_argument("--layer", action="append", metavar="NAME",
                        help="recalibrate only this layer (the variables' prefix, e.g. "
                             "resnet_v1_50/conv1/BatchNorm; a Keras layer's name or path); "
                             "repeat for several")
    parser.add_argument("--batch-size", type=int, metavar="B",
                        help="rows per batch when a file's array is split (default %d, or the "
                             "input's fixed batch size); with a .npz, splits each array"
                             % DEFAULT_BATCH_SIZE)
    parser.add_argument("--max-batches", type=int, metavar="K",
                        help="stop after K batches (default: all)")
    parser.add_argument("--check-batches", type=int, metavar="K",
                        help="check the statistics in inference mode on the first K batches "
                             "(default: all of them; 0: no check)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing checkpoint at --out (never the input)")
    add_json_option(parser, "the report")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def run(args: argparse.Namespace, parser: argparse.ArgumentParser, out: Output) -> int:
    """The repair command with its parsed ``args``; raises BnDecayProbeError on bad input.
    Paths, data headers and numbers are checked before TensorFlow is imported."""
    if keras_file_kind(args.checkpoint) is not None:
        return _run_keras(args, out)
    if args.preprocess is not None:
        raise ProbeConfigError("--preprocess applies to Keras model files; a checkpoint's graph "
                               "takes the data as it is")
    prefix = paths.input_prefix(args.checkpoint)
    destination = paths.output_prefix(args.out, prefix, args.overwrite)
    batch_size, max_batches = _numbers(args)
    data = open_data(args.data)
    if args.json not in (None, "-"):
        check_writable(args.json)

    from .. import backend  # does not import TensorFlow yet
    from ..repair import recalibrate_checkpoint

    backend.silence_native_logs()
    result = recalibrate_checkpoint(
        prefix, data, destination, inputs=args.input, training=args.training, layers=args.layer,
        batch_size=batch_size, max_batches=max_batches,
        check_batches=args.check_batches, overwrite=args.overwrite,
        progress=progress.wanted(args.quiet), flags=_FLAGS)
    return _report(result, args, out)


def _numbers(args: argparse.Namespace) -> Tuple[Optional[int], Optional[int]]:
    if args.check_batches is not None and args.check_batches < 0:
        raise ProbeConfigError("--check-batches must be >= 0 (0: no check), got %d"
                               % args.check_batches)
    return (check_batch_size(args.batch_size, "--batch-size"),
            check_batch_size(args.max_batches, "--max-batches"))


def _run_keras(args: argparse.Namespace, out: Output) -> int:
    """A Keras .keras / .h5 model file: checked (paths, data, preprocess) before Keras and
    TensorFlow are imported."""
    no_tensor_names(args.input, args.training, _FLAGS)
    destination = keras_writer.output_path(args.out, args.checkpoint, args.overwrite)
    batch_size, max_batches = _numbers(args)
    data = keras_data(args.data)
    preprocess = check_preprocess(args.preprocess)
    if isinstance(data, ImageFolder) and preprocess is None:
        raise ProbeConfigError("data %s is a directory of images: say how the model's inputs "
                               "were scaled with --preprocess MODULE:FUNCTION (such as "
                               "keras.applications.mobilenet_v2:preprocess_input), or "
                               "--preprocess none for pixels 0-255" % args.data)
    if args.json not in (None, "-"):
        check_writable(args.json)

    from .. import backend  # does not import TensorFlow yet
    from ..repair.keras_repair import recalibrate_keras_file

    backend.silence_native_logs()
    result = recalibrate_keras_file(
        args.checkpoint, data, destination, layers=args.layer, batch_size=batch_size,
        max_batches=max_batches, check_batches=args.check_batches, overwrite=args.overwrite,
        progress=progress.wanted(args.quiet), preprocess=preprocess)
    return _report(result, args, out)


def _report(result: Any, args: argparse.Namespace, out: Output) -> int:
    """The report as text (unless --json -) and as JSON (with --json)."""
    from ..repair import render_repair

    if args.json != "-":
        out.emit(render_repair(result))
    if args.json:
        out.json(result.to_dict(), args.json)
    return EXIT_OK
