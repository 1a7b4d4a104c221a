"""Port check: does a model ported out of TensorFlow (to PyTorch, ONNX, Keras 3) keep its batch
norm? Pairs the two sides' batch-norm layers and checks each pair's statistics, epsilon and
momentum, and its inference output on a seeded input.

Modules: ``api`` (:func:`check_port`), ``sides`` (what a source or target is, and its readers),
``live`` (a live torch.nn.Module or Keras model), ``tf_graph`` (a TF checkpoint's .meta: decay,
epsilon, order), ``mapping`` (the --map file), ``pairing``, ``checks`` (one pair, in numpy),
``result`` (what is returned) and ``render`` (text). Importing this package imports no
framework.
"""
from .api import check_port
from .render import render_port
from .result import CODES, LayerPair, PortCheck, PortFinding, PortSide

__all__ = ["check_port", "render_port", "PortCheck", "PortFinding", "PortSide", "LayerPair",
           "CODES"]
