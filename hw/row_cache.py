"""Tag store of the gather engine's row cache: set-associative, true LRU, one lookup per cycle.

It mirrors :class:`tridsa.sw.row_cache.RowCache` exactly: set ``row % sets``, tag ``row // sets``,
a committed miss allocates, the least recently used way is the victim (a bypassed miss is simply not
committed: the index queue does not pulse ``access``). Only tags and LRU state live here;
the row data lives in the engine's line memory at ``slot * line_words`` (``slot = set * ways + way``).

LRU state: per set, the ways' ages form a permutation of ``0 .. ways-1`` (0 = most recent). An access
to a way of age ``a`` makes it 0 and ages every way younger than ``a`` by one, which keeps the
permutation. A flush invalidates every way; invalid ways are never touched, so they always stay older
than every valid way, and the victim (age ``ways - 1``) is an invalid way whenever the set has one:
exactly the golden model's "append until full, then evict the LRU row".
"""
from amaranth import *
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["RowCacheTags"]


class RowCacheTags(wiring.Component):
    """Lookup and update of the cache tags.

    ``row`` is looked up combinationally: ``hit``, ``slot`` (the way holding ``row`` on a hit, the
    victim on a miss) and ``evict`` (the victim holds a valid row) are valid in the same cycle. Pulsing
    ``access`` commits the lookup (LRU update, and on a miss the fill of ``slot`` with ``row``'s tag),
    so the next cycle's lookup sees it. ``flush`` invalidates every line (and wins over ``access``).

    Parameters
    ----------
    sets, ways:
        Geometry (``sets`` a power of two, ``ways`` >= 1), from ``Config.cache_sets/cache_ways``.
    row_bits:
        Width of a row index.
    """

    def __init__(self, sets, ways, row_bits=24):
        if sets < 1 or sets & (sets - 1) or ways < 1:
            raise ValueError(f"sets={sets} must be a power of two and ways={ways} >= 1")
        self.sets, self.ways, self.row_bits = sets, ways, row_bits
        self.set_bits = (sets - 1).bit_length()
        self.slot_shape = range(sets * ways)
        super().__init__({
            "row": In(row_bits), "access": In(1), "flush": In(1),
            "hit": Out(1), "slot": Out(self.slot_shape), "evict": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        S, N = self.sets, self.ways
        tag_bits = max(1, self.row_bits - self.set_bits)
        tags = Array(Array(Signal(tag_bits, name=f"tag_{s}_{w}") for w in range(N)) for s in range(S))
        valid = Array(Array(Signal(name=f"valid_{s}_{w}") for w in range(N)) for s in range(S))
        ages = Array(Array(Signal(range(N), init=w, name=f"age_{s}_{w}") for w in range(N)) for s in range(S))

        set_idx = Signal(max(1, self.set_bits))
        tag = Signal(tag_bits)
        m.d.comb += [set_idx.eq(self.row[:self.set_bits] if self.set_bits else 0), tag.eq(self.row[self.set_bits:])]
        way_hit = Signal(N)
        hit_way, victim, chosen = Signal(range(N)), Signal(range(N)), Signal(range(N))
        for w in range(N):
            m.d.comb += way_hit[w].eq(valid[set_idx][w] & (tags[set_idx][w] == tag))
            with m.If(way_hit[w]):
                m.d.comb += hit_way.eq(w)
            with m.If(ages[set_idx][w] == N - 1):
                m.d.comb += victim.eq(w)
        m.d.comb += [self.hit.eq(way_hit.any()), chosen.eq(Mux(self.hit, hit_way, victim)),
                     self.slot.eq(set_idx * N + chosen),
                     self.evict.eq(~self.hit & valid[set_idx][victim])]

        age = Signal(range(N))
        m.d.comb += age.eq(ages[set_idx][chosen])
        with m.If(self.flush):
            for s in range(S):
                for w in range(N):
                    m.d.sync += [valid[s][w].eq(0), ages[s][w].eq(w)]
        with m.Elif(self.access):
            with m.Switch(set_idx):
                for s in range(S):
                    with m.Case(s):
                        for w in range(N):
                            with m.If(chosen == w):
                                m.d.sync += [ages[s][w].eq(0), valid[s][w].eq(1), tags[s][w].eq(tag)]
                            with m.Elif(ages[s][w] < age):
                                m.d.sync += ages[s][w].eq(ages[s][w] + 1)
        return m
