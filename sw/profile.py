"""Checked, profiled offloading: run every layer on a gateware backend AND the golden model.

:class:`CheckedAccelerator` has the driver's layer methods (``matmul``, ``matmul_batch``, ``conv2d``,
``embedding_bag``, ``sketch``), so any workload's ``forward(acc, ...)`` can run on it unchanged. Each call
runs on both backends, the outputs must be equal bit for bit (else :class:`Mismatch`), and a
:class:`LayerRecord` keeps the gateware's counters for reports (one per call, also for a batched GEMM).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from ..spec.config import Config
from .driver import Accelerator

__all__ = ["CheckedAccelerator", "LayerRecord", "Mismatch"]


class Mismatch(AssertionError):
    """A gateware result differs from the golden model's."""


@dataclasses.dataclass
class LayerRecord:
    workload: str
    op: str
    shape: str
    macs: int
    cycles: int
    utilization: float | None
    bytes_moved: int
    wall_seconds: float
    lookup_bytes: int = 0     # embedding bags: bytes of the table rows the lookups need

    @property
    def intensity(self) -> float:
        """Arithmetic intensity: MACs per byte moved between memory and the engines."""
        return self.macs / self.bytes_moved if self.bytes_moved else float("nan")


def _gemm_shape(a, b, args, kwargs) -> str:
    """``"MxKxN precision"`` of a matmul call (``precision`` is the fifth argument after ``a, b``)."""
    precision = kwargs.get("precision", args[4] if len(args) > 4 else "int8")
    return f"{a.shape[0]}x{a.shape[1]}x{b.shape[1]} {precision}"


class CheckedAccelerator:
    """Runs each offloaded layer on ``backend`` and on the golden model; records counters."""

    def __init__(self, backend: str = "verilator", config: Config | None = None, on_layer=None):
        self.gateware = Accelerator(backend, config)
        self.golden = Accelerator("golden", self.gateware.config)
        self.config = self.gateware.config
        self.records: list[LayerRecord] = []
        self.workload = ""
        self.on_layer = on_layer

    def _call(self, op, shape, *args, lookup_bytes=0, **kwargs):
        expected = getattr(self.golden, op)(*args, **kwargs)
        got = getattr(self.gateware, op)(*args, **kwargs)
        if got.dtype != expected.dtype or not np.array_equal(got, expected):
            bad = int(np.sum(got != expected)) if got.shape == expected.shape else "shape"
            raise Mismatch(f"{self.workload} {op} {shape}: {self.gateware.backend.name} differs from golden "
                           f"({bad} elements)")
        run = self.gateware.last_run
        words = run.counters.get("mem_reads", 0) + run.counters.get("mem_writes", 0)
        record = LayerRecord(self.workload, op, shape, run.macs, run.cycles, run.utilization,
                             words * self.config.mem_width, run.wall_seconds or 0.0, lookup_bytes)
        self.records.append(record)
        if self.on_layer:
            self.on_layer(record)
        return got

    def matmul(self, a, b, *args, **kwargs):
        return self._call("matmul", _gemm_shape(a, b, args, kwargs), a, b, *args, **kwargs)

    def matmul_batch(self, a, b, *args, **kwargs):
        """One batched GEMM, one record: ``shape`` is ``batch x (M x K x N)``."""
        return self._call("matmul_batch", f"{len(a)}x({_gemm_shape(a[0], b[0], args, kwargs)})", a, b,
                          *args, **kwargs)

    def conv2d(self, x, w, *args, **kwargs):
        return self._call("conv2d", f"x{tuple(x.shape)} w{tuple(w.shape)}", x, w, *args, **kwargs)

    def sketch(self, a, k, *args, **kwargs):
        return self._call("sketch", f"{a.shape[0]}x{a.shape[1]} k={k} {kwargs.get('dist', 'rademacher')}",
                          a, k, *args, **kwargs)

    def embedding_bag(self, table, indices, *args, **kwargs):
        table = np.asarray(table)
        return self._call("embedding_bag", f"table{tuple(table.shape)} idx{len(indices)}", table, indices,
                          *args, lookup_bytes=len(indices) * table.shape[1] * table.dtype.itemsize, **kwargs)
