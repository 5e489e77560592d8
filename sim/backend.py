"""The backends by name: each executes a :class:`tridsa.sw.program.Program` and returns a :class:`RunResult`
(the interface: :class:`tridsa.sim.backend_base.Backend`).

``golden`` interprets the instructions in NumPy; ``amaranth`` simulates the gateware in Python;
``verilator`` runs a compiled C++ model of the generated Verilog in a long-lived process (the fast path);
``cocotb-verilator`` and ``icarus`` run the generated Verilog under cocotb. Every gateware backend must
give the golden model's memory image and status bit for bit, and they all give the same cycle counters.
"""
from __future__ import annotations

__all__ = ["BACKENDS", "SIMULATION_BACKENDS", "WAVE_FORMATS", "get_backend"]

BACKENDS = ("golden", "amaranth", "verilator", "cocotb-verilator", "icarus", "fpga", "uart-sim")
#: The backends that need no board: the golden model and the simulators.
SIMULATION_BACKENDS = BACKENDS[:5]
#: Backends that write waveforms with ``waves=PATH``, and the format each writes.
WAVE_FORMATS = {"verilator": ".fst", "icarus": ".fst", "amaranth": ".vcd"}


def get_backend(name: str, config, waves=None, **options):
    """The backend called ``name`` for ``config``; unknown names raise ValueError.

    ``waves``: a file name; the backends of :data:`WAVE_FORMATS` dump every run's waveforms there.
    ``options`` go to backends that take them: ``fpga`` (``port``, ``baud``, ``readback``) and
    ``uart-sim`` (``simulator``, ``divisor``, ``readback``); see :mod:`tridsa.sw.fpga`. The HDL simulation
    backends take ``mem_stall_seed``: random memory stalls from that seed (0: none; tests).
    """
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}: expected one of {', '.join(BACKENDS)}")
    if waves is not None and name not in WAVE_FORMATS:
        raise ValueError(f"backend {name!r} does not write waveforms; use one of {', '.join(WAVE_FORMATS)}")
    if name == "fpga":
        from ..sw.fpga import FpgaBackend
        return FpgaBackend(config, **options)
    if name == "uart-sim":
        from .uart_sim import UartSimBackend
        return UartSimBackend(config, **options)
    stall_options = {"mem_stall_seed"} if name in ("amaranth", "verilator", "icarus", "cocotb-verilator") else set()
    if set(options) - stall_options:
        raise TypeError(f"backend {name!r} takes no options {sorted(set(options) - stall_options)}")
    if name == "golden":
        from .golden import GoldenBackend
        return GoldenBackend(config)
    if name == "amaranth":
        from .amaranth_sim import AmaranthBackend
        return AmaranthBackend(config, waves=waves, **options)
    if name == "verilator":
        from .verilator_model import VerilatorBackend
        return VerilatorBackend(config, waves=waves, **options)
    from .cocotb_sim import CocotbBackend
    return CocotbBackend(config, "verilator" if name == "cocotb-verilator" else "icarus", waves=waves, **options)
