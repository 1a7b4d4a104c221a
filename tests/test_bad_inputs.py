"""Every bad input users meet, in the library and on the command line, with the exact one line
they get. The library raises ProbeConfigError; the CLI prints ``run_experiment.py: error:
<message>`` on stderr and exits with status 2, never with a traceback.

Arguments are checked before TensorFlow is imported: every row that needs no TensorFlow runs in
one subprocess where importing it fails. docs/errors.md shows this table as users read it:
``python tests/test_bad_inputs.py`` prints it for ``make docs``, and a test here compares.
"""
import contextlib
import io
import json
import os
import shlex
import subprocess
import sys
from typing import NamedTuple

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SCRIPT = os.path.join(ROOT, "run_experiment.py")
ERRORS_DOC = os.path.join(ROOT, "docs", "errors.md")
ERRORS_MARKER = "<!-- make-docs: python tests/test_bad_inputs.py -->"
PROG = "run_experiment.py"


class Bad(NamedTuple):
    kind: str  # what is wrong: type, range, NaN/inf, shape, dtype, empty, size, ...
    where: str  # "python": an expression; "shell": the arguments of run_experiment.py
    typed: str
    message: str
    # "TF": checked once TensorFlow runs; "no GPU": only without a GPU; "TF 1.15 CPU": only
    # TF 1.15's CPU kernels refuse it (TF 2.x runs fused NCHW: test_semantics checks that).
    needs: str = ""


def py(kind, code, message, needs=""):
    return Bad(kind, "python", code, message, needs)


def sh(kind, args, message, needs=""):
    return Bad(kind, "shell", args, message, needs)


SHAPE = "shape must be 4 positive integers (N, H, W, C), got "
FLOAT_DTYPE = "inputs must be a float array (float16, float32 or float64), got dtype "
MATRIX = "--matrix measures its own grid of api, fused and updates; it cannot be combined with "

BAD_INPUTS = [
    py("range", "probe(decay=1.5)", "decay must be a number in [0, 1], got 1.5"),
    py("range", "probe(decay=-0.1)", "decay must be a number in [0, 1], got -0.1"),
    py("NaN/inf", 'probe(decay=float("nan"))', "decay must be a number in [0, 1], got nan"),
    py("NaN/inf", 'probe(decay=np.float32("nan"))', "decay must be a number in [0, 1], got nan"),
    py("type", 'probe(decay="0.9")', "decay must be a number in [0, 1], got '0.9'"),
    py("type", "probe(decay=True)", "decay must be a number in [0, 1], got True"),
    py("type", "probe(decay=None)", "decay must be a number in [0, 1], got None"),
    py("position", "probe(0.9, (1, 4, 4, 1))",
       "inputs (1, 4, 4, 1) is a shape, not an array [N, H, W, C]: pass shape=(1, 4, 4, 1) to "
       "draw an input of that shape"),
    py("position", "probe(0.9, None, (1, 4, 4, 1))",
       "probe() takes decay and inputs by position, the rest by keyword: got (1, 4, 4, 1) as "
       "argument 3; pass shape=(1, 4, 4, 1)"),
    py("position", "sweep([0.9], 60, None, (1, 4, 4, 1))",
       "sweep() takes decays, steps and inputs by position, the rest by keyword: got "
       "(1, 4, 4, 1) as argument 4; pass shape=(1, 4, 4, 1)"),
    py("choice", 'set_verbosity("loud")',
       "verbosity must be one of quiet, default, verbose, got 'loud'"),
    py("type", "probe(inputs=[[1.0], [1.0, 2.0]])",
       "inputs must be a float array [N, H, W, C], got a ragged nested sequence (its rows "
       "differ in length)"),
    py("type", 'probe(inputs="1,2,3,4")',
       "inputs must be a float array [N, H, W, C], got a value of type str"),
    py("type", 'probe(inputs={"x": np.zeros((1, 2, 2, 1))})',
       "inputs must be a float array [N, H, W, C], got a value of type dict"),
    py("type", "probe(inputs=np.array([[[[1.0, None]]]], dtype=object))",
       "inputs must be a float array [N, H, W, C], got an array of Python objects (NoneType, "
       "float)"),
    py("type", "probe(inputs=np.ma.masked_invalid(np.full((1, 2, 2, 1), np.nan)))",
       "inputs must be a plain float array, got a masked array: fill the masked values first "
       "(x.filled(...))"),
    py("dtype", "probe(inputs=np.zeros((1, 2, 2, 1), np.int32))", FLOAT_DTYPE + "int32"),
    py("dtype", "probe(inputs=np.zeros((1, 2, 2, 1), np.complex64))", FLOAT_DTYPE + "complex64"),
    py("dtype", "probe(inputs=np.zeros((1, 2, 2, 1), bool))", FLOAT_DTYPE + "bool"),
    py("shape", "probe(inputs=np.float32(3.0))",
       "inputs must be 4-D [N, H, W, C], got 0-D with shape ()"),
    py("shape", "probe(inputs=np.zeros((4, 4, 1), np.float32))",
       "inputs must be 4-D [N, H, W, C], got 3-D with shape (4, 4, 1)"),
    py("empty", "probe(inputs=np.zeros((0, 2, 2, 1)))",
       "inputs must not be empty, got shape (0, 2, 2, 1)"),
    py("NaN/inf", "probe(inputs=np.array([[[[1.0], [np.nan]]]]))",
       "inputs must be finite, got 1 NaN or inf value(s)"),
    py("NaN/inf", "probe(inputs=np.full((1, 1, 2, 1), np.inf))",
       "inputs must be finite, got 2 NaN or inf value(s)"),
    py("range", "probe(inputs=np.full((1, 1, 1, 1), 1e39))",
       "inputs must fit in float32 (|x| <= 3.403e+38), got max |x| = 1e+39"),
    py("conflict", "probe(inputs=np.zeros((1, 2, 2, 1)), shape=(1, 4, 4, 1))",
       "shape (1, 4, 4, 1) conflicts with inputs of shape (1, 2, 2, 1); pass one or the other"),
    py("range", "probe(shape=(1, 0, 4, 1))", SHAPE + "(1, 0, 4, 1)"),
    py("shape", "probe(shape=(4, 4, 1))", SHAPE + "(4, 4, 1)"),
    py("type", "probe(shape=(1, 4.0, 4, 1))", SHAPE + "(1, 4.0, 4, 1)"),
    py("type", 'probe(shape="1,4,4,1")', SHAPE + "'1,4,4,1'"),
    py("size", "probe(shape=(10**6, 10**6, 10**6, 1))",
       "shape (1000000, 1000000, 1000000, 1) would draw 1e+18 values; the probe draws at most "
       "67108864 (2**26): use a smaller shape"),
    py("range", "probe(steps=0)", "steps must be an integer >= 1, got 0"),
    py("type", "probe(steps=1.5)", "steps must be an integer >= 1, got 1.5"),
    py("type", "probe(steps=True)", "steps must be an integer >= 1, got True"),
    py("range", "probe(seed=-1)", "seed must be an integer in [0, 2**32 - 1], got -1"),
    py("range", "probe(seed=2**32)", "seed must be an integer in [0, 2**32 - 1], got 4294967296"),
    py("type", "probe(seed=1.0)", "seed must be an integer in [0, 2**32 - 1], got 1.0"),
    py("type", 'probe(fused="yes")',
       "fused must be None (TensorFlow's default), True or False, got 'yes'"),
    py("range", "probe(epsilon=0.0)", "epsilon must be a finite number > 0, got 0.0"),
    py("NaN/inf", 'probe(epsilon=float("inf"))', "epsilon must be a finite number > 0, got inf"),
    py("type", 'probe(epsilon="1e-3")', "epsilon must be a finite number > 0, got '1e-3'"),
    py("choice", 'probe(api="mxnet")',
       "api must be one of contrib, layers, keras, nn, keras3, torch, torch-cumulative, flax, "
       "haiku, keras3-jax, keras3-torch, got 'mxnet'"),
    py("conflict", 'probe(api="flax", trainable=False)',
       "flax.linen.BatchNorm(momentum=decay) has no trainable flag; trainable=False is for api "
       "contrib, layers, keras, keras3, torch, torch-cumulative, keras3-jax, keras3-torch"),
    py("conflict", 'probe(api="torch", fused=True)',
       "fused=True is not available with api='torch': torch.nn.BatchNorm2d(momentum=1 - decay) "
       "has no fused argument; use fused=None or False"),
    py("conflict", 'probe(api="haiku", updates="update_ops")',
       "api='haiku' updates the moving statistics as the layer runs (Haiku has no update ops to "
       "collect or forget); updates must be 'inplace', got 'update_ops'"),
    py("choice", 'probe(updates="never")',
       "updates must be one of inplace, update_ops, forgotten, got 'never'"),
    py("choice", 'probe(data_format="nhwc")', "data_format must be one of NHWC, NCHW, got 'nhwc'"),
    py("type", "probe(zero_debias=1)", "zero_debias must be True or False, got 1"),
    py("type", 'probe(share_variables="no")', "share_variables must be True or False, got 'no'"),
    py("type", "probe(trainable=0)", "trainable must be True or False, got 0"),
    py("conflict", 'probe(api="nn", trainable=False)',
       "trainable is an argument of the contrib, layers, keras and keras3 layers; api='nn' has no "
       "layer to pass it to"),
    py("conflict", 'probe(zero_debias=True, api="keras")',
       "zero_debias is tf.contrib.layers.batch_norm's zero_debias_moving_mean and needs "
       "api='contrib', got api='keras'"),
    py("conflict", 'probe(api="keras3", fused=True)',
       "fused=True is not available with api='keras3': Keras 3's BatchNormalization has no fused "
       "argument (it builds the non-fused ops); use fused=None or False"),
    py("conflict", 'probe(api="keras3", updates="forgotten")',
       "api='keras3' updates the moving statistics as the layer runs (Keras 3 has no update ops "
       "to collect or forget); updates must be 'inplace', got 'forgotten'"),
    py("device", 'probe(device="tpu")', "device must be one of auto, cpu, gpu, got 'tpu'"),
    py("device", 'probe(device="gpu")',
       "device 'gpu' was requested but TensorFlow sees no GPU; use device 'cpu' or 'auto'",
       "no GPU"),
    py("device", 'probe(data_format="NCHW", fused=True, device="cpu")',
       "data_format 'NCHW' is not supported here by TensorFlow 1.15.5 on /device:CPU:0 (The CPU "
       "implementation of FusedBatchNorm only supports NHWC tensor format for now.); use "
       "data_format='NHWC' or fused=False", "TF 1.15 CPU"),
    py("empty", "probe(batches=[])",
       "batches must be a non-empty sequence of float arrays [N, H, W, C], got an empty list"),
    py("empty", "probe(batches=np.zeros((0, 1, 2, 2, 1)))",
       "batches must be a non-empty sequence of float arrays [N, H, W, C], got an array of "
       "shape (0, 1, 2, 2, 1)"),
    py("shape", "probe(batches=np.zeros((1, 2, 2, 1)))",
       "batches must be a sequence of float arrays [N, H, W, C] or one array [B, N, H, W, C], "
       "got one array of shape (1, 2, 2, 1); for one batch x, pass [x]"),
    py("shape", "probe(batches=[np.zeros((1, 2, 2, 1)), np.zeros((1, 3, 2, 1))])",
       "batches must all have one shape: batches[0] is (1, 2, 2, 1), batches[1] is "
       "(1, 3, 2, 1)"),
    py("dtype", "probe(batches=[np.zeros((1, 2, 2, 1)), np.zeros((1, 2, 2, 1), int)])",
       "batches[1] must be a float array (float16, float32 or float64), got dtype int64"),
    py("type", "probe(batches=(np.zeros((1, 2, 2, 1)) for _ in range(3)))",
       "batches must be a non-empty sequence of float arrays [N, H, W, C], got a value of type "
       "generator"),
    py("conflict", "probe(inputs=np.zeros((1, 2, 2, 1)), batches=[np.zeros((1, 2, 2, 3))])",
       "batches have 3 channel(s) but inputs have 1; the train and test inputs must share C"),
    py("NaN/inf", 'probe().steps_to_converge(float("nan"))',
       "tol must be a finite number > 0, got nan", "TF"),
    py("range", "semantics_matrix(decays=[0.9, 2])", "decay must be a number in [0, 1], got 2"),
    py("NaN/inf", 'semantics_matrix(tol=float("nan"))', "tol must be a finite number > 0, got nan"),

    sh("range", "--decay 1.5", "decay must be a number in [0, 1], got 1.5"),
    sh("NaN/inf", "--decay nan", "decay must be a number in [0, 1], got nan"),
    sh("type", "--decay abc", "argument --decay: invalid float value: 'abc' (see --help)"),
    sh("type", "--decay", "argument --decay: expected one argument (see --help)"),
    sh("range", "--shape 1,0,4,1", SHAPE + "(1, 0, 4, 1)"),
    sh("shape", "--shape 1,4,4", SHAPE + "(1, 4, 4)"),
    sh("type", "--shape a,b,c,d",
       "argument --shape: must be 4 positive integers N,H,W,C such as 1,4,4,1, got 'a,b,c,d' "
       "(see --help)"),
    sh("size", "--shape 1000,1000,1000,3",
       "shape (1000, 1000, 1000, 3) would draw 3e+09 values; the probe draws at most 67108864 "
       "(2**26): use a smaller shape"),
    sh("range", "--steps 0", "steps must be an integer >= 1, got 0"),
    sh("type", "--steps 2.5", "argument --steps: invalid int value: '2.5' (see --help)"),
    sh("range", "--seed -1", "seed must be an integer in [0, 2**32 - 1], got -1"),
    sh("range", "--seed -5 --batches 2", "seed must be an integer in [0, 2**32 - 1], got -5"),
    sh("range", "--epsilon 0", "epsilon must be a finite number > 0, got 0.0"),
    sh("NaN/inf", "--epsilon nan", "epsilon must be a finite number > 0, got nan"),
    sh("range", "--tol 0", "--tol must be a finite number > 0, got 0.0"),
    sh("NaN/inf", "--tol nan", "--tol must be a finite number > 0, got nan"),
    sh("choice", "--api mxnet",
       "api must be one of contrib, layers, keras, nn, keras3, torch, torch-cumulative, flax, "
       "haiku, keras3-jax, keras3-torch, got 'mxnet'"),
    sh("choice", "--updates never",
       "updates must be one of inplace, update_ops, forgotten, got 'never'"),
    sh("choice", "--data-format NHCW", "data_format must be one of NHWC, NCHW, got 'NHCW'"),
    sh("conflict", "--fused --no-fused",
       "argument --no-fused: not allowed with argument --fused (see --help)"),
    sh("conflict", "--zero-debias --api layers",
       "zero_debias is tf.contrib.layers.batch_norm's zero_debias_moving_mean and needs "
       "api='contrib', got api='layers'"),
    sh("conflict", "--matrix --api keras --steps 3", MATRIX + "--steps, --api"),
    sh("conflict", "--matrix --no-fused", MATRIX + "--fused/--no-fused"),
    sh("conflict", "--matrix --no-trainable", MATRIX + "--no-trainable"),
    sh("conflict", "--api nn --no-trainable",
       "trainable is an argument of the contrib, layers, keras and keras3 layers; api='nn' has no "
       "layer to pass it to"),
    sh("conflict", "--api keras3 --fused",
       "fused=True is not available with api='keras3': Keras 3's BatchNormalization has no fused "
       "argument (it builds the non-fused ops); use fused=None or False"),
    sh("range", "--matrix --decay 2", "decay must be a number in [0, 1], got 2.0"),
    sh("range", "--batches 0", "--batches must be a count >= 1 or a FILE.npy, got 0"),
    sh("type", "--batches data.txt",
       "argument --batches: must be a count K or a FILE.npy, got 'data.txt' (see --help)"),
    sh("file", "--batches /nonexistent/b.npy",
       "--batches /nonexistent/b.npy cannot be read: No such file or directory"),
    sh("size", "--batches 100000 --shape 8,32,32,3",
       "shape (100000, 8, 32, 32, 3) would draw 2.46e+09 values; the probe draws at most "
       "67108864 (2**26): use a smaller shape"),
    sh("file", "--json /nonexistent-dir/out.json",
       "--json /nonexistent-dir/out.json cannot be written: No such file or directory"),
    sh("file", "--json /", "--json / is a directory; give a file path or -"),
    sh("file", "--json ''", "--json needs a file path or -, got ''"),
    sh("file", "--decay 0.5 --device cpu --json /dev/full",
       "--json /dev/full cannot be written: No space left on device", "TF"),
    sh("device", "--device tpu", "device must be one of auto, cpu, gpu, got 'tpu'"),
    sh("device", "--device gpu",
       "device 'gpu' was requested but TensorFlow sees no GPU; use device 'cpu' or 'auto'",
       "no GPU"),
    sh("device", "--data-format NCHW --fused --device cpu",
       "data_format 'NCHW' is not supported here by TensorFlow 1.15.5 on /device:CPU:0 (The CPU "
       "implementation of FusedBatchNorm only supports NHWC tensor format for now.); use "
       "data_format='NHWC' or fused=False", "TF 1.15 CPU"),
    sh("option", "--bogus", "unrecognized arguments: --bogus (see --help)"),
    sh("option", "--decya 0.5",
       "unrecognized arguments: --decya 0.5; --decya: did you mean --decay or --decays? (see "
       "--help)"),
    sh("command", "docter x",
       "unknown command 'docter'; did you mean doctor? (commands: doctor, repair, port; the probe "
       "itself takes options only) (see --help)"),
]


def python_outcome(code):
    """[exception class, message] of evaluating ``code``, or ["no error", ""]."""
    import numpy as np

    from bn_decay_probe import probe, semantics_matrix, set_verbosity, sweep

    try:
        eval(code, {"np": np, "probe": probe, "semantics_matrix": semantics_matrix,
                    "set_verbosity": set_verbosity, "sweep": sweep})
    except Exception as exc:
        return [type(exc).__name__, str(exc)]
    return ["no error", ""]


def shell_outcome(args):
    """[exit status, stderr, stdout] of the CLI's main() on ``args``, in this process."""
    from bn_decay_probe.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = main(shlex.split(args), prog=PROG)
        except SystemExit as exc:  # argparse's own errors
            status = exc.code
        except Exception as exc:  # a traceback: shown in the failure, not raised
            status = "%s: %s" % (type(exc).__name__, exc)
    return [status, err.getvalue(), out.getvalue()]


def outcomes_without_tensorflow():
    """Reads [where, typed] rows on stdin and prints their outcomes, with TensorFlow blocked."""
    sys.modules["tensorflow"] = None  # from here on, `import tensorflow` raises ImportError
    rows = json.load(sys.stdin)
    print(json.dumps([python_outcome(typed) if where == "python" else shell_outcome(typed)
                      for where, typed in rows]))


def _id(row):
    return ("%s %s" % ("python" if row.where == "python" else PROG, row.typed))[:80]


@pytest.fixture(scope="module")
def without_tensorflow():
    """The outcome of every row not marked as needing TensorFlow, all in one subprocess."""
    rows = [row for row in BAD_INPUTS if not row.needs]
    code = ("import sys; sys.path.insert(0, %r); import test_bad_inputs; "
            "test_bad_inputs.outcomes_without_tensorflow()" % HERE)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT,
                         universal_newlines=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         input=json.dumps([[row.where, row.typed] for row in rows]))
    assert out.returncode == 0, out.stderr
    return dict(zip(rows, json.loads(out.stdout)))


@pytest.mark.filterwarnings("ignore::bn_decay_probe.DeviceFallbackWarning")  # probe() rows
@pytest.mark.parametrize("row", BAD_INPUTS, ids=_id)
def test_bad_input_gives_its_one_line(row, without_tensorflow):
    if row.needs in ("no GPU", "TF 1.15 CPU"):
        from bn_decay_probe import backend

        if backend.visible_gpus():
            pytest.skip("TensorFlow sees a GPU here")
        if row.needs == "TF 1.15 CPU" and backend.name() != "tf1":
            pytest.skip("TF 2.x runs fused NCHW on the CPU (test_semantics.py checks it)")
    if row.where == "python":
        outcome = without_tensorflow.get(row) or python_outcome(row.typed)
        assert outcome == ["ProbeConfigError", row.message]
    else:
        outcome = without_tensorflow.get(row) or _run(row.typed)
        assert outcome == [2, "%s: error: %s\n" % (PROG, row.message), ""]


def _run(args):
    """The real script in its own process: TensorFlow loads, and a traceback would show."""
    out = subprocess.run([sys.executable, SCRIPT] + shlex.split(args), cwd=ROOT,
                         universal_newlines=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return [out.returncode, out.stderr, out.stdout]


def render_doc():
    """The table of docs/errors.md: the rows above, as users read them (make docs writes it
    there from ``python tests/test_bad_inputs.py``)."""
    def code(text):
        return "`%s`" % text.replace("|", "\\|")

    lines = ["| what | you type | you get |", "|---|---|---|"]
    for row in BAD_INPUTS:
        typed = row.typed if row.where == "python" else "python %s %s" % (PROG, row.typed)
        kind = row.kind + {"": "", "TF": " (TF)", "no GPU": " (TF, without a GPU)",
                           "TF 1.15 CPU": " (TF 1.15 on the CPU)"}[row.needs]
        lines.append("| %s | %s | %s |" % (kind, code(typed), code(row.message)))
    return "\n".join(lines) + "\n"


def test_docs_errors_table_is_this_table():
    with open(ERRORS_DOC) as handle:
        text = handle.read()
    assert "%s\n%s<!-- /make-docs -->\n" % (ERRORS_MARKER, render_doc()) in text, \
        "docs/errors.md's table is out of date: run make docs"


if __name__ == "__main__":
    print(render_doc(), end="")
