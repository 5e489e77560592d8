"""The engines of the top level and the interface every engine implements.

An engine is a ``wiring.Component`` class with

* ``OPS``: the instruction names it executes (:data:`tridsa.spec.isa.ENGINE_OPS` of its name);
* ``COUNTERS``: names of its performance counters (``COUNTER_BITS`` wide, cleared by reset);
* ports ``start`` (In 1: one-cycle pulse, ``instr`` valid), ``instr`` (In ``isa.INSTR_BITS``: the raw
  instruction word, view it with :func:`tridsa.hw.instr.instr_layout`), ``done`` (Out 1: one-cycle pulse
  when finished), ``error`` (Out 8: error code, valid with ``done``; 0 = ok), ``counters``
  (Out struct of ``COUNTERS``) and ``mem`` (Out :class:`tridsa.hw.memory.MemPort`).

An engine owns the memory port from ``start`` to ``done``; it must finish every memory request it
started (all writes accepted, all reads returned) before ``done``, and must reach ``done`` for every
instruction, legal or not.
"""
from ..spec import isa
from .gather import GatherEngine
from .gemm import GemmEngine
from .sketch import SketchEngine

__all__ = ["ENGINES"]

# name -> engine class; the name prefixes its counters ("gemm_busy", ...). ``Config.engines`` picks from it.
ENGINES = {"gemm": GemmEngine, "gather": GatherEngine, "sketch": SketchEngine}
assert all(cls.OPS == isa.ENGINE_OPS[name] for name, cls in ENGINES.items())
