"""The engines of the top level and the interface every engine implements.

An engine is a ``wiring.Component`` class with

* ``OPS``: the instruction names it executes (:data:`tridsa.spec.isa.ENGINE_OPS` of its name);
* ``COUNTERS``: names of its performance counters (``Config.counter_bits`` wide, cleared by reset);
* ports ``start`` (In 1: one-cycle pulse, ``instr`` valid; only while ``ready``), ``instr`` (In
  ``isa.INSTR_BITS``: the raw instruction word, view it with :func:`tridsa.hw.instr.instr_layout`),
  ``ready`` (Out 1: the engine takes an instruction), ``done`` (Out 1: one-cycle pulse when an instruction
  finished, one per started instruction, in the order they started), ``error`` (Out 8: error code, valid
  with ``done``; 0 = ok), ``counters`` (Out struct of ``COUNTERS``) and ``mem`` (Out
  :class:`tridsa.hw.memory.MemPort`).

An engine owns the memory port while it has instructions in flight (from the first ``start`` to the
last ``done``). It may be ``ready`` again before the previous instruction is ``done`` (the GEMM engine
overlaps consecutive GEMMs); it then handles the hazards between them and must not start an instruction's
memory accesses before every earlier instruction passed its checks. It must finish every memory request
of an instruction (all writes reached memory, all reads returned) before that instruction's ``done``,
must reach ``done`` for every instruction, legal or not, and reports an error only after every earlier
instruction is done.

The engines that run side by side (:data:`tridsa.hw.engine_port.SIDE_BY_SIDE`, with ``Config.overlap``)
also have ``checked`` (Out 1: every instruction it has in flight passed its checks, so the dispatcher may
start one on the other engine), ``reads``/``writes`` (Out: the regions of its instructions in flight that
passed their checks) and ``go`` (In 1: an instruction that passed its checks may touch memory; low while
its regions meet those of the other engine's older instructions). Their ``done`` may come before the other
engine's older instructions are done: the dispatcher retires in order.
"""
from ..spec import isa
from .gather import GatherEngine
from .gemm import GemmEngine
from .gemm_compact import CompactGemmEngine
from .sketch import SketchEngine

__all__ = ["ENGINES", "engine_class"]

# name -> engine class; the name prefixes its counters ("gemm_busy", ...). ``Config.engines`` picks from it.
ENGINES = {"gemm": GemmEngine, "gather": GatherEngine, "sketch": SketchEngine}
assert all(cls.OPS == isa.ENGINE_OPS[name] for name, cls in ENGINES.items())
assert CompactGemmEngine.OPS == GemmEngine.OPS and CompactGemmEngine.COUNTERS == GemmEngine.COUNTERS


def engine_class(name, config):
    """The engine class of ``name`` on a chip of ``config``: the GEMM engine ``Config.gemm_engine`` picks."""
    return CompactGemmEngine if name == "gemm" and config.gemm_engine == "compact" else ENGINES[name]
