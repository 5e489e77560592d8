"""The Accelerator: the public driver that offloads layers to a backend.

Each call validates its arguments, builds a :class:`~tridsa.sw.program.Program`, runs it on the backend
and reads the results back; ``last_run`` holds the counters of the call.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from . import isa
from .builder import ProgramBuilder
from .config import Config
from .conv import conv2d_program
from .gemm_ops import emit_gemm

__all__ = ["Accelerator", "AcceleratorError", "RunStats"]


class AcceleratorError(RuntimeError):
    """The accelerator reported an error in its status register."""

    def __init__(self, code, pc):
        self.code, self.pc = code, pc
        super().__init__(f"accelerator error {isa.ERROR_NAMES.get(code, code)} at instruction {pc}")


@dataclasses.dataclass
class RunStats:
    """Counters of one driver call (``cycles`` is None on the golden backend, which has no clock).

    ``counters`` holds the hardware counters by name (``gemm_busy``, ``gemm_feed``, ...).
    """
    backend: str
    instructions: int
    cycles: int | None
    macs: int
    peak_macs_per_cycle: int
    wall_seconds: float | None = None
    counters: dict = dataclasses.field(default_factory=dict)

    def __getattr__(self, name):
        counters = self.__dict__.get("counters", {})
        if name in counters:
            return counters[name]
        raise AttributeError(name)

    @property
    def cycles_per_second(self) -> float | None:
        """Simulated cycles per wall-clock second (simulation speed)."""
        if not self.cycles or not self.wall_seconds:
            return None
        return self.cycles / self.wall_seconds

    @property
    def utilization(self) -> float | None:
        """MACs done / (peak MACs per cycle x cycles)."""
        if not self.cycles:
            return None
        return self.macs / (self.peak_macs_per_cycle * self.cycles)

    def as_dict(self) -> dict:
        result = {k: v for k, v in dataclasses.asdict(self).items() if k != "counters"}
        return dict(result, **self.counters, utilization=self.utilization)


class Accelerator:
    """tridsa driver.

    Parameters
    ----------
    backend:
        ``"golden"`` (NumPy), ``"amaranth"`` (Python simulation of the gateware), ``"verilator"`` or
        ``"icarus"`` (cocotb on the generated Verilog).
    config:
        The :class:`Config` (default ``Config()``).
    """

    def __init__(self, backend: str = "golden", config: Config | None = None):
        from ..sim.backend import get_backend
        if config is None:
            config = Config()
        if not isinstance(config, Config):
            raise TypeError(f"config must be a tridsa.Config, got {type(config).__name__}")
        self.config = config
        self.backend = get_backend(backend, config)
        self.last_run: RunStats | None = None

    def run(self, program):
        """Run a Program; raise :class:`AcceleratorError` if the status register reports an error."""
        result = self.backend.run(program)
        if result.error:
            raise AcceleratorError(result.error, result.error_pc)
        return result

    def _stats(self, result, program, macs, peak):
        c = dict(result.counters)
        self.last_run = RunStats(backend=self.backend.name, instructions=len(program.instructions) - 1,
                                 cycles=c.pop("cycles", None), macs=macs, peak_macs_per_cycle=peak,
                                 wall_seconds=c.pop("wall_seconds", None), counters=c)

    def _peak(self, precision):
        return self.config.peak_macs_int8 * (2 if precision == "int4" else 1)

    def matmul(self, a, b, bias=None, requant=None, relu=False, precision="int8", out_dtype=None):
        """``requant(a @ b + bias)`` with int32 accumulation; see :func:`tridsa.sw.gemm_ops.emit_gemm`."""
        builder = ProgramBuilder(self.config)
        call = emit_gemm(builder, a, b, bias, requant, relu, precision, out_dtype)
        program = builder.build()
        result = self.run(program)
        self._stats(result, program, call.macs, self._peak(precision))
        return call.result(program, result.memory)

    def conv2d(self, x, w, bias=None, stride=1, padding=0, dilation=1, groups=1, requant=None, relu=False,
               precision="int8", out_dtype=None):
        """2-D convolution (NCHW input, OIHW weights) lowered to GEMMs by im2col, one per group."""
        program, finish, macs = conv2d_program(self.config, x, w, bias, stride, padding, dilation, groups,
                                               requant, relu, precision, out_dtype)
        result = self.run(program)
        self._stats(result, program, macs, self._peak(precision))
        return finish(result.memory)
