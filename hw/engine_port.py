"""The ports every engine has (see :mod:`tridsa.hw.engines` for the protocol), and the ports of engines
that run side by side (a GATHER beside a GEMM): the regions they publish and the hazard rule between them."""
from amaranth import Cat
from amaranth.lib import data
from amaranth.lib.wiring import In, Out

from ..spec import isa
from .counters import counter_layout
from .memory import MemPort

__all__ = ["engine_ports", "log2", "beyond_memory", "side_by_side", "region_layout", "regions_conflict"]

#: The engines that run side by side (docs/isa.md, "Ordering and hazards").
SIDE_BY_SIDE = ("gemm", "gather")


def engine_ports(config, counters, instr_shape=isa.INSTR_BITS, regions=None) -> dict:
    """Signature members of an engine: start/instr in, ready/done/error out, its counters, its memory port;
    with ``regions = (reads, writes)`` and :func:`side_by_side`, also ``go`` (In 1, high when undriven: an
    engine alone), ``checked`` (Out 1)
    and the ``reads``/``writes`` regions it publishes (:func:`region_layout` arrays)."""
    ports = {"start": In(1), "instr": In(instr_shape), "ready": Out(1), "done": Out(1), "error": Out(8),
             "counters": Out(counter_layout(config, counters)), "mem": Out(MemPort(config))}
    if regions is not None and side_by_side(config):
        reads, writes = regions
        ports.update({"go": In(1, init=1), "checked": Out(1), "reads": Out(data.ArrayLayout(region_layout(config), reads)),
                      "writes": Out(data.ArrayLayout(region_layout(config), writes))})
    return ports


def side_by_side(config) -> bool:
    """Whether the chip runs a GATHER and a GEMM side by side (``Config.overlap`` and both engines)."""
    return config.overlap and all(name in config.engines for name in SIDE_BY_SIDE)


def region_layout(config) -> data.StructLayout:
    """A memory region ``[lo, hi)`` in words (``valid`` low: no region)."""
    return data.StructLayout({"lo": config.addr_bits + 1, "hi": config.addr_bits + 1, "valid": 1})


def _meets(x, y):
    return x.valid & y.valid & (x.lo < y.hi) & (y.lo < x.hi)


def regions_conflict(a, b):
    """True when engines ``a`` and ``b`` (their published regions) have a hazard: one reads what the other
    writes (read after write, write after read) or both write a word (write after write)."""
    terms = [_meets(r, w) for r in a.reads for w in b.writes] + [_meets(w, r) for w in a.writes for r in b.reads]
    terms += [_meets(w, v) for w in a.writes for v in b.writes]
    return Cat(terms).any()


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
