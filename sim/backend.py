"""Backends execute a :class:`tridsa.sw.program.Program` and return a :class:`RunResult`.

``golden`` interprets the instructions in NumPy; ``amaranth`` simulates the gateware in Python;
``verilator`` and ``icarus`` run the generated Verilog under cocotb. Every gateware backend must give
the golden model's memory image and status bit for bit, plus cycle counters.
"""
from __future__ import annotations

__all__ = ["BACKENDS", "Backend", "get_backend"]

BACKENDS = ("golden", "amaranth", "verilator", "icarus", "fpga", "uart-sim")


class Backend:
    """Runs Programs for one Config. Subclasses implement :meth:`run`."""
    name = "?"

    def __init__(self, config):
        self.config = config

    def run(self, program):
        raise NotImplementedError

    def _check(self, program):
        if program.config != self.config:
            raise ValueError(f"the Program was built for {program.config}, this {self.name} backend for {self.config}")


def get_backend(name: str, config, **options) -> Backend:
    """The backend called ``name`` for ``config``; unknown names raise ValueError.

    ``options`` go to backends that take them: ``fpga`` (``port``, ``baud``, ``readback``) and
    ``uart-sim`` (``simulator``, ``divisor``, ``readback``); see :mod:`tridsa.sw.fpga`.
    """
    if name == "fpga":
        from ..sw.fpga import FpgaBackend
        return FpgaBackend(config, **options)
    if name == "uart-sim":
        from .uart_sim import UartSimBackend
        return UartSimBackend(config, **options)
    if options:
        raise TypeError(f"backend {name!r} takes no options, got {sorted(options)}")
    if name == "golden":
        from .golden import GoldenBackend
        return GoldenBackend(config)
    if name == "amaranth":
        from .amaranth_sim import AmaranthBackend
        return AmaranthBackend(config)
    if name in ("verilator", "icarus"):
        from .cocotb_sim import CocotbBackend
        return CocotbBackend(config, name)
    raise ValueError(f"unknown backend {name!r}: expected one of {', '.join(BACKENDS)}")
