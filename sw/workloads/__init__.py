"""Quantized, integer-only workloads that run on the accelerator: CNN, Transformer, LSTM, DLRM.

Every model is loaded with ``load_<model>(precision="int8" | "mixed")`` from the small parameter files
in ``tridsa/sw/weights`` (written by ``scripts/train_models.py``) and has

* ``forward(acc, x)``: integer inputs in, integer outputs out. Every matmul, convolution and embedding
  bag goes to ``acc`` (an :class:`tridsa.Accelerator` or anything with the same ``matmul`` /
  ``conv2d`` / ``embedding_bag`` methods); the glue in between (residual adds with dyadic rescaling,
  pooling, I-BERT non-linearities, integer sigmoid/tanh, the DLRM dot interaction) is integer NumPy.
* ``layers()``: one dict per offloaded layer (name, op, shapes, precision, output format).

``load_<model>_float()`` gives the float reference (NumPy, same parameters before quantization)
with ``forward(x)``. See ``docs/workloads.md`` for the architectures and measured accuracies.

What the models share: :mod:`tridsa.sw.workloads.base`.
"""
from .base import (ROUNDING, WEIGHTS_DIR, FloatModel, QConv2d, QLinear, QuantModel, accuracy, build_layer,
                   digits_test_set)
from .cnn import load_cnn, load_cnn_float
from .dlrm import load_dlrm, load_dlrm_float
from .rnn import load_lstm, load_lstm_float
from .transformer import load_transformer, load_transformer_float

__all__ = [
    "WEIGHTS_DIR", "FloatModel", "QConv2d", "QLinear", "QuantModel", "ROUNDING", "accuracy", "build_layer",
    "digits_test_set", "load_cnn", "load_cnn_float", "load_dlrm", "load_dlrm_float", "load_lstm", "load_lstm_float",
    "load_transformer", "load_transformer_float",
]
