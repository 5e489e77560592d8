"""The ports every engine has (see :mod:`tridsa.hw.engines` for the protocol)."""
from amaranth.lib.wiring import In, Out

from ..sw import isa
from .counters import counter_layout
from .memory import MemPort

__all__ = ["engine_ports", "log2", "beyond_memory"]


def engine_ports(config, counters, instr_shape=isa.INSTR_BITS) -> dict:
    """Signature members of an engine: start/instr in, ready/done/error out, its counters, its memory port."""
    return {"start": In(1), "instr": In(instr_shape), "ready": Out(1), "done": Out(1), "error": Out(8),
            "counters": Out(counter_layout(counters)), "mem": Out(MemPort(config))}


def log2(x: int) -> int:
    """log2 of a power of two (Config sizes are powers of two)."""
    return x.bit_length() - 1


def beyond_memory(config, addr, words):
    """True when the region ``[addr, addr + words)`` does not fit the memory (an ADDR_RANGE error).

    Exact for every ``addr``, with an adder only ``addr_bits + 2`` wide: an address with a bit set at or
    above ``addr_bits + 1`` is beyond memory whatever ``words`` is.
    """
    L = config.addr_bits + 1
    return addr[L:].any() | ((addr[:L] + words) > config.mem_depth)
