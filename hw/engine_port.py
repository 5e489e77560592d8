"""The ports every engine has (see :mod:`tridsa.hw.engines` for the protocol)."""
from amaranth.lib.wiring import In, Out

from ..sw import isa
from .counters import counter_layout
from .memory import MemPort

__all__ = ["engine_ports"]


def engine_ports(config, counters, instr_shape=isa.INSTR_BITS) -> dict:
    """Signature members of an engine: start/instr in, done/error out, its counters, its memory port."""
    return {"start": In(1), "instr": In(instr_shape), "done": Out(1), "error": Out(8),
            "counters": Out(counter_layout(counters)), "mem": Out(MemPort(config))}
