"""Model zoo: the layer shapes of real networks, run on the accelerator at full size.

ResNet-50 (224 x 224, batch 1), MobileNetV2 (224 x 224, batch 1), a BERT-base encoder layer (sequence
128), an LSTM layer (hidden 1024, 25 steps, batch 1 and 64) and DLRM with the MLPerf Criteo shapes. The
weights are deterministic integers drawn from a generator seeded by the layer's name: pretrained weights
cannot be downloaded in this environment, and cycles, bytes and utilization depend only on the shapes
and the dataflow, which are the real ones. Every requant scale follows from the layer's fan-in, so the
activations keep a useful int8 range through the network; the glue between layers (residual adds,
pooling, I-BERT softmax / GELU / LayerNorm, the LSTM cell, the DLRM interaction) is integer NumPy on the
host, as in :mod:`tridsa.sw.workloads`.

:func:`run_model` runs one model on an :class:`~tridsa.Accelerator` (and, if given, checks every layer
bit for bit against a golden one) and returns one :class:`Layer` per offloaded call.
"""
from __future__ import annotations

import dataclasses
import math
import zlib

import numpy as np

from ..requant import Requant
from .bert import bert
from .cnn import mobilenetv2, resnet50
from .dlrm import dlrm
from .lstm import lstm

__all__ = ["MODELS", "Layer", "Recorder", "run_model"]


@dataclasses.dataclass
class Layer:
    """One offloaded call of a model: its work, its traffic and its cycles (``last_run`` of the call)."""
    model: str
    name: str
    op: str
    shape: str
    macs: int
    cycles: int
    peak_macs_per_cycle: int
    mem_bytes: int            # bytes the engines moved over the memory port
    host_bytes: int           # bytes moved between host and accelerator memory
    programs: int
    instructions: int
    lookup_bytes: int = 0     # embedding stages: bytes of the rows the lookups need

    def as_dict(self, port_bytes: int) -> dict:
        """The record plus utilization, arithmetic intensity and the fraction of the roofline reached."""
        row = dataclasses.asdict(self)
        row["utilization"] = self.macs / (self.peak_macs_per_cycle * self.cycles) if self.cycles else None
        row["intensity"] = self.macs / self.mem_bytes if self.mem_bytes else None
        if self.macs and self.cycles:
            roof = min(self.peak_macs_per_cycle, row["intensity"] * port_bytes)
            row["roofline_fraction"] = self.macs / self.cycles / roof
        else:           # a memory-bound stage: the port's peak against the bytes its lookups need
            row["roofline_fraction"] = self.lookup_bytes / port_bytes / self.cycles if self.cycles else None
        return row


class Recorder:
    """The driver's layer calls with a layer name, recording a :class:`Layer` per call.

    ``golden``: another Accelerator every call is repeated on and compared with, bit for bit.
    ``on_layer(layer)`` is called after each call (progress).
    """

    def __init__(self, acc, model: str, golden=None, on_layer=None):
        self.acc, self.golden, self.model, self.on_layer = acc, golden, model, on_layer
        self.config = acc.config
        self.layers: list[Layer] = []

    def weights(self, name: str, shape, bits: int = 8) -> np.ndarray:
        """Deterministic int8-valued weights of layer ``name`` (uniform in +-2**(bits-1) - 1)."""
        rng = np.random.default_rng(zlib.crc32(f"{self.model}/{name}".encode()))
        hi = (1 << (bits - 1)) - 1
        return rng.integers(-hi, hi + 1, shape, dtype=np.int8)

    def _call(self, op, name, shape, *args, lookup_bytes=0, **kwargs):
        out = getattr(self.acc, op)(*args, **kwargs)
        if self.golden is not None:
            expected = getattr(self.golden, op)(*args, **kwargs)
            if expected.dtype != out.dtype or not np.array_equal(expected, out):
                raise AssertionError(f"{self.model} {name}: {self.acc.backend.name} differs from golden")
        run = self.acc.last_run
        words = (run.counters.get("mem_reads") or 0) + (run.counters.get("mem_writes") or 0)
        layer = Layer(self.model, name, op, shape, run.macs, run.cycles, run.peak_macs_per_cycle,
                      words * self.config.mem_width, run.host_bytes, run.programs, run.instructions, lookup_bytes)
        self.layers.append(layer)
        if self.on_layer:
            self.on_layer(layer)
        return out

    def linear(self, name, x, n, relu=False, out_dtype="int8", precision="int8"):
        """``x (M, K) @ W (K, n)`` with a fan-in requant (int8 out) or int32 out without requant."""
        k = x.shape[1]
        w = self.weights(name, (k, n), 4 if precision == "int4" else 8)
        rq = None if out_dtype == "int32" else fan_in_requant(k)
        return self._call("matmul", name, f"{x.shape[0]}x{k}x{n}", x, w, None, rq, relu, precision, out_dtype)

    def matmul_batch(self, name, a, b, requant=None, out_dtype=None):
        shape = f"{a.shape[0]}x({a.shape[1]}x{a.shape[2]}x{b.shape[2]})"
        return self._call("matmul_batch", name, shape, a, b, None, requant, False, "int8", out_dtype)

    def conv(self, name, x, cout, kernel, stride=1, padding=0, groups=1, relu=True):
        cin = x.shape[1]
        w = self.weights(name, (cout, cin // groups, kernel, kernel))
        shape = f"{cin}x{x.shape[2]}x{x.shape[3]} -> {cout} k{kernel} s{stride}" + (f" g{groups}" if groups > 1 else "")
        return self._call("conv2d", name, shape, x, w, None, stride, padding, 1, groups,
                          fan_in_requant(cin // groups * kernel * kernel), relu)

    def embedding_bags(self, name, tables, indices, offsets, out_shift=None):
        dim = tables[0].shape[1]
        lookups = sum(len(i) for i in indices)
        shape = f"{len(tables)} tables x {dim}, {lookups} lookups"
        return self._call("embedding_bags", name, shape, tables, indices, offsets,
                          lookup_bytes=lookups * dim * tables[0].dtype.itemsize, out_shift=out_shift)


def fan_in_requant(k: int) -> Requant:
    """Requant of an int8 x int8 sum over ``k`` products to int8: weights uniform in +-127 (std ~73) and
    activations of std ~40 give a sum of std ~2900 sqrt(k); it is mapped to std ~32."""
    return Requant.from_scale(32.0 / (2900.0 * math.sqrt(k)), 0, "half_up")


def run_model(name: str, acc, golden=None, on_layer=None, **options) -> list:
    """Run zoo model ``name`` (a key of :data:`MODELS`) on ``acc``; return its :class:`Layer` records."""
    if name not in MODELS:
        raise ValueError(f"unknown zoo model {name!r}: expected one of {', '.join(MODELS)}")
    recorder = Recorder(acc, name, golden, on_layer)
    MODELS[name](recorder, **options)
    return recorder.layers


#: model name -> function(recorder, **options) running the model's layers.
MODELS = {"resnet50": resnet50, "mobilenetv2": mobilenetv2, "bert": bert, "lstm": lstm, "dlrm": dlrm}
