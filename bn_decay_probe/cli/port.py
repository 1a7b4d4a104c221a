"""``bn-decay-probe port SOURCE TARGET``: check from the shell that a port keeps a model's batch
norm.

Exit status: 0 clean (every layer's inference output kept, epsilon and momentum match), 1
findings, 2 bad input (one line on stderr), 3 incomplete (no finding, but something could not be
checked: the verdict line and the "not checked:" lines say what). Arguments, paths and the map
are checked before any framework is imported.
"""
from __future__ import annotations

import argparse
from typing import Optional

from .. import port
# The doctor's verdicts and their exit statuses (VERDICT: a reader that closed the pipe early
# does not change the status).
from .doctor import EXIT_STATUS, VERDICT  # noqa: F401
from .output import Output, check_writable
from .parser import Parser, add_json_option


def build_parser(prog: Optional[str] = None) -> argparse.ArgumentParser:
    parser = Parser(prog=prog, description=(
        "Check that a port keeps a model's batch norm: pairs the batch-norm layers of SOURCE "
        "and TARGET and checks each pair's moving statistics, epsilon and momentum, and its "
        "inference output on a seeded input. Exit 0 when clean, 1 with findings, 2 on bad "
        "input, 3 when no finding but something could not be checked (the output says what)."))
    parser.add_argument("source", metavar="SOURCE",
                        help="the original: a TF checkpoint (prefix, one of its files, or a "
                             "directory), a Keras .keras/.h5/.weights.h5 file or a SavedModel; "
                             "also a .pt/.pth/.bin state dict, .safetensors or .onnx")
    parser.add_argument("target", metavar="TARGET",
                        help="the port: a .pt/.pth/.bin state dict, .safetensors, .onnx, a Keras "
                             ".keras/.h5/.weights.h5 file, or a TF checkpoint")
    parser.add_argument("--map", metavar="FILE",
                        help="name pairs, source then target, where names and network order "
                             "leave doubt: JSON {\"source\": \"target\"} or two names a line "
                             "(layer or variable names)")
    parser.add_argument("--target-eps", type=float, metavar="E",
                        help="the target's epsilon when it stores none (state dicts, "
                             "safetensors); default PyTorch's 1e-05")
    parser.add_argument("--target-momentum", type=float, metavar="M",
                        help="the target's momentum when it stores none, as PyTorch spells it "
                             "(1 - decay); without it momentum is not checked")
    parser.add_argument("--verbose", action="store_true",
                        help="also print the per-pair table and every finding's detail")
    add_json_option(parser, "the check (every pair's numbers)")
    return parser


def run(args: argparse.Namespace, parser: argparse.ArgumentParser, out: Output) -> int:
    """The port command with its parsed ``args``; raises BnDecayProbeError on bad input."""
    if args.json not in (None, "-"):
        check_writable(args.json)
    from .. import backend  # does not import TensorFlow yet

    backend.silence_native_logs()
    check = port.check_port(args.source, args.target, mapping=args.map,
                            target_eps=args.target_eps, target_momentum=args.target_momentum)
    if args.json:
        out.json(check.to_dict(), args.json)
    if args.json != "-":
        out.emit(port.render_port(check, verbose=args.verbose))
    return EXIT_STATUS[check.status]
