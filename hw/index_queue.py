"""The gather engine's index prefetch queue: bags -> cache lookups -> row reads issued early.

It walks the bags in order (``n_bags + 1`` offsets, the indices and, if ``weighted``, one weight per
index), looks every index up in the row cache tags *in index order* and pushes one :data:`ENTRY` per
row (or per empty bag) into a FIFO of ``Config.prefetch_depth`` entries. A miss also issues the row's
read (``reads``: ``{addr, count}`` for a :class:`~tridsa.hw.memory.BlockReader`) at lookup time, so up
to ``prefetch_depth`` rows are fetched while the pooling unit still works on older entries: the memory
latency of misses overlaps, while the cache state changes exactly in index order as in the golden
model (the pooling unit fills and reads line data in the same order, so an entry always sees the line
contents its lookup saw).

Bit :data:`~tridsa.spec.gather_layout.BYPASS_BIT` of an index word is the bypass hint: a miss with it
is read like any miss but not allocated (the tags and LRU state stay as they were, the entry's
``bypass`` bit tells the pooling unit not to write the line). A hit is a hit whatever the hint.
"""
from amaranth import *
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from ..spec.gather_layout import BYPASS_BIT
from .counters import counter_layout
from .row_cache import RowCacheTags

__all__ = ["IndexQueue", "entry_layout", "COUNTERS"]

COUNTERS = ("lookups", "hits", "misses", "evictions", "bypasses")


def entry_layout(config) -> data.StructLayout:
    """One row (or empty bag) for the pooling unit, in index order."""
    return data.StructLayout({
        "slot": range(config.cache_sets * config.cache_ways),  # cache line of the row
        "hit": 1,            # 1: the line holds the row; 0: the row's words arrive from memory (fill)
        "bypass": 1,         # a miss that is not allocated: its words are pooled, not stored in the line
        "first": 1,          # first row of its bag
        "last": 1,           # last row of its bag: the bag is complete after it
        "empty": 1,          # an empty bag (no row; slot/hit/first unused)
        "weight": 32,        # per-sample weight (1 when unweighted)
    })


class IndexQueue(wiring.Component):
    """Bag walker, row cache lookup and miss issue, with a ``prefetch_depth``-entry output FIFO.

    ``start`` (one cycle, while idle) flushes the cache and resets the walk; ``n_bags``, ``weighted``,
    ``table_addr`` and ``row_words`` must be stable from then until every bag was pushed. Every
    offset after the first must not be below its predecessor (the engine's check pass guarantees it).
    ``done`` is high once every bag's entries were pushed.
    """

    def __init__(self, config, row_bits=24):
        self.config = config
        self.row_bits = row_bits
        read = data.StructLayout({"addr": config.addr_bits, "count": 24})
        super().__init__({
            "start": In(1), "n_bags": In(24), "weighted": In(1), "table_addr": In(config.addr_bits),
            "row_words": In(16),
            "offsets": In(stream.Signature(32)), "indices": In(stream.Signature(32)),
            "weights": In(stream.Signature(32)),
            "reads": Out(stream.Signature(read)), "entries": Out(stream.Signature(entry_layout(config))),
            "counters": Out(counter_layout(config, COUNTERS)), "done": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        m.submodules.tags = tags = RowCacheTags(cfg.cache_sets, cfg.cache_ways, self.row_bits)
        m.submodules.queue = queue = fifo.SyncFIFOBuffered(width=entry_layout(cfg).size, depth=cfg.prefetch_depth)
        entry = Signal(entry_layout(cfg))
        m.d.comb += [queue.w_data.eq(entry), self.entries.valid.eq(queue.r_rdy),
                     self.entries.payload.eq(queue.r_data), queue.r_en.eq(self.entries.ready)]

        primed = Signal()                  # offsets[0] consumed
        prev = Signal(32)                  # the last offset consumed
        bags = Signal(24)                  # bags started
        remaining = Signal(32)             # rows of the current bag not yet looked up (0: none started)
        first = Signal()                   # the current bag's next lookup is its first
        m.d.comb += self.done.eq(primed & (bags == self.n_bags) & (remaining == 0))

        # A bag's offset is taken in the cycle its first row is looked up, or earlier: while the previous
        # bag's last row is. An empty bag pushes its own entry, in a cycle without a lookup.
        length = Signal(32)
        m.d.comb += length.eq(self.offsets.payload - prev)
        offset_in = primed & (bags != self.n_bags) & self.offsets.valid
        starting = offset_in & (remaining == 0)          # the current bag's offset is on the stream
        rows_left = Signal(32)                           # rows of the current bag not yet looked up
        m.d.comb += rows_left.eq(Mux(starting, length, remaining))

        # ---- one row per cycle: lookup, push the entry, issue the read of a miss -------------
        weight_ok = ~self.weighted | self.weights.valid
        row = self.indices.payload[:self.row_bits]
        bypass = self.indices.payload[BYPASS_BIT]
        m.d.comb += [tags.row.eq(row),
                     self.reads.payload.addr.eq(self.table_addr + row * self.row_words),
                     self.reads.payload.count.eq(self.row_words)]
        ready_in = (rows_left != 0) & self.indices.valid & weight_ok & queue.w_rdy
        m.d.comb += self.reads.valid.eq(ready_in & ~tags.hit)
        fire = ready_in & (tags.hit | self.reads.ready)
        with m.If(fire):
            m.d.comb += [tags.access.eq(tags.hit | ~bypass), self.indices.ready.eq(1),
                         self.weights.ready.eq(self.weighted), queue.w_en.eq(1),
                         entry.slot.eq(tags.slot), entry.hit.eq(tags.hit), entry.bypass.eq(~tags.hit & bypass),
                         entry.first.eq(starting | first),
                         entry.last.eq(rows_left == 1),
                         entry.weight.eq(Mux(self.weighted, self.weights.payload, 1))]
            m.d.sync += [remaining.eq(rows_left - 1), first.eq(0)]
            c = self.counters
            m.d.sync += c.lookups.eq(c.lookups + 1)
            with m.If(tags.hit):
                m.d.sync += c.hits.eq(c.hits + 1)
            with m.Else():
                m.d.sync += c.misses.eq(c.misses + 1)
                with m.If(bypass):
                    m.d.sync += c.bypasses.eq(c.bypasses + 1)
            with m.If(tags.evict & ~bypass):
                m.d.sync += c.evictions.eq(c.evictions + 1)

        # ---- offsets: one per bag ------------------------------------------------------------
        chain = offset_in & ~starting & (remaining == 1) & fire & (length != 0)
        with m.If(~primed):
            m.d.comb += self.offsets.ready.eq(1)
            with m.If(self.offsets.valid):
                m.d.sync += [primed.eq(1), prev.eq(self.offsets.payload)]
        with m.Elif((starting & ((length != 0) | queue.w_rdy)) | chain):
            m.d.comb += self.offsets.ready.eq(1)
            m.d.sync += [prev.eq(self.offsets.payload), bags.eq(bags + 1)]
            with m.If(starting & (length == 0)):
                m.d.comb += [entry.empty.eq(1), entry.last.eq(1), queue.w_en.eq(1)]
            with m.Elif(~fire | chain):                  # no row of this bag looked up yet
                m.d.sync += [remaining.eq(length), first.eq(1)]

        with m.If(self.start):
            m.d.comb += tags.flush.eq(1)
            m.d.sync += [primed.eq(0), bags.eq(0), remaining.eq(0), first.eq(0)]
        return m
