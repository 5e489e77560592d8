"""Gather engine: runs GATHER (embedding_bag over a table in memory) from one instruction.

Dataflow (every arrow a valid/ready stream)::

    offsets reader -> splitter -\\
    indices reader -> splitter --> IndexQueue --(entries, prefetch_depth deep)--> PoolingUnit --> writer
    weights reader -> splitter -/      |  (cache tags + LRU, in index order)        ^  (line memory,
                                       \\--(row reads of misses)--> rows reader ----/    accumulators)

A GATHER runs in two passes. The **check pass** streams the offsets and the indices side by side,
checking a whole memory word of each per cycle (:func:`tridsa.sw.gather_golden.check_gather`); an
illegal instruction ends there, having written nothing (and read no row). The **main pass** reads the
same offsets and indices again; its reads are issued right behind the check pass's, so their latency
overlaps the check, but nothing consumes them before the check passed. It walks the bags: the index
queue looks rows up ahead (a bag's offset is taken with its first lookup) and issues the reads of
misses early, the pooling unit consumes rows in order (one word per cycle, from the line memory on a
hit or from the rows reader on a miss, which it also writes into the line) and hands every finished
bag to an output buffer, also in the cycle the previous bag's last word leaves it, so bags of one row
pool at one per cycle.
"""
from amaranth import *
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..spec import isa
from ..spec.gather_layout import BYPASS_BIT, MEAN_DIVIDE_STEPS as _DIV_STEPS, ROWS_AHEAD, line_words
from .engine_port import beyond_memory, engine_ports, log2
from .gemm import WordSplitter
from .index_queue import COUNTERS as QUEUE_COUNTERS, IndexQueue, entry_layout
from .instr import instr_layout
from .memory import BlockReader, MemArbiter

__all__ = ["GatherEngine", "PoolingUnit", "MeanDivider", "CheckPass"]


def _field(name: str):
    """Shape of the GATHER instruction field ``name`` (the pooling unit's ports carry fields as they are)."""
    return instr_layout("GATHER").members[name]


class PoolingUnit(wiring.Component):
    """Pools rows into bags and emits every bag as ``out_words`` int32 output words (mode copy: the
    sum's lanes wrapped to the table's element width, in the table's row layout; ``narrow``: the result
    lanes rounded by ``2**-shift``, ties up, and saturated to the element width, in the row layout).

    ``entries`` come from :class:`~tridsa.hw.index_queue.IndexQueue`; a miss entry takes its
    ``row_words`` words from ``fills`` (and stores them in its cache line unless it is a bypass), a
    hit reads its line.
    Element ``e`` of a row is byte lane ``e`` (int8 table) or 32-bit lane ``e`` (int32 table) of the
    row's words. Per element: ``sum`` adds ``weight * x`` modulo 2**32, ``max`` keeps the first of
    equal values, ``mean`` divides the wrapped sum by the row count rounding half away from zero
    (a radix-2 divider, ``_DIV_STEPS`` cycles per output word, all lanes of a word in parallel).
    Output lanes at or past ``dim`` are zero; an empty bag gives zeros.

    ``mode``, ``dtype``, ``dim``, ``row_words`` and ``out_words`` must be stable while entries flow.
    """

    def __init__(self, config):
        self.config = config
        self.line_words = line_words(config)
        super().__init__({
            "entries": In(stream.Signature(entry_layout(config))), "fills": In(stream.Signature(config.mem_bits)),
            "out": Out(stream.Signature(config.mem_bits)),
            "mode": In(_field("mode")), "dtype": In(_field("dtype")), "dim": In(_field("dim")),
            "row_words": In(16), "out_words": In(16), "narrow": In(_field("narrow")), "shift": In(_field("out_shift")),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        W, L = cfg.mem_width, self.line_words
        lanes32 = W // 4
        slots = cfg.cache_sets * cfg.cache_ways
        m.submodules.lines = lines = Memory(shape=cfg.mem_bits, depth=slots * L, init=[])
        wr, rd = lines.write_port(), lines.read_port()
        acc_layout = data.ArrayLayout(data.ArrayLayout(signed(32), W), L)     # L words x W lanes
        acc, acc_next, out_buf = Signal(acc_layout), Signal(acc_layout), Signal(acc_layout)

        # ---- stage 1: one word of the head entry per cycle ------------------------------------
        e = self.entries.payload
        wi = Signal(range(max(2, L)))
        s2 = Signal(data.StructLayout({"valid": 1, "wi": range(max(2, L)), "first": 1, "final": 1, "empty": 1,
                                       "hit": 1, "weight": 32}))
        fill_word = Signal(cfg.mem_bits)
        out_busy = Signal()
        out_free = Signal()        # the output buffer can take a bag this cycle (empty, or its last word leaves)
        hold = Signal()            # stage 2 holds a finished bag until the output buffer is free
        m.d.comb += hold.eq(s2.valid & s2.final & ~out_free)
        last_word = wi == self.row_words - 1
        final = e.empty | (e.last & last_word)
        have_word = e.empty | e.hit | self.fills.valid
        issue = self.entries.valid & have_word & ~hold
        line_addr = e.slot * L + wi
        m.d.comb += [rd.addr.eq(line_addr), rd.en.eq(~hold), wr.addr.eq(line_addr), wr.data.eq(self.fills.payload)]
        with m.If(~hold):
            m.d.sync += s2.valid.eq(issue)
        with m.If(issue):
            m.d.sync += [s2.wi.eq(wi), s2.first.eq(e.first), s2.final.eq(final), s2.empty.eq(e.empty),
                         s2.hit.eq(e.hit), s2.weight.eq(e.weight), fill_word.eq(self.fills.payload)]
            with m.If(~e.empty & ~e.hit):
                m.d.comb += [self.fills.ready.eq(1), wr.en.eq(~e.bypass)]
            with m.If(e.empty | last_word):
                m.d.comb += self.entries.ready.eq(1)
                m.d.sync += wi.eq(0)
            with m.Else():
                m.d.sync += wi.eq(wi + 1)

        # ---- stage 2: accumulate one word ----------------------------------------------------
        word = Mux(s2.hit, rd.data, fill_word)
        weight = s2.weight.as_signed()
        old = Signal(data.ArrayLayout(signed(32), W))       # one word select, shared by every lane below
        m.d.comb += old.eq(acc[s2.wi])
        new = Signal(data.ArrayLayout(signed(32), W))
        for i in range(W):
            x8 = word[8 * i:8 * i + 8].as_signed()
            x = Signal(signed(32), name=f"x{i}")
            if i < lanes32:
                m.d.comb += x.eq(Mux(self.dtype, word[32 * i:32 * i + 32].as_signed(), x8))
                prod = (x * weight)[:32].as_signed()
            else:
                m.d.comb += x.eq(x8)
                prod = (x8 * weight)[:32].as_signed()
            with m.If(self.mode == 2):
                m.d.comb += new[i].eq(Mux(s2.first | (x > old[i]), x, old[i]))
            with m.Else():
                m.d.comb += new[i].eq(Mux(s2.first, 0, old[i]) + prod)
        m.d.comb += acc_next.eq(acc)
        m.d.comb += acc_next[s2.wi].eq(new)
        count, count_next, out_count = Signal(24), Signal(24), Signal(24)
        m.d.comb += count_next.eq(Mux(s2.wi == 0, Mux(s2.first, 1, count + 1), count))
        with m.If(s2.valid & ~s2.empty & ~hold):
            m.d.sync += [acc.eq(acc_next), count.eq(count_next)]

        # ---- output: out_words words per bag from out_buf (mean: divide first) ------------------
        # out_buf is a shift register: output word j is always at its bottom (no wide variable shift).
        # Each word that leaves shifts it by one output word: lanes32 int32 lanes for an int8 table's
        # sums, a whole row word of lanes when each output word is one row word (int32 table, copy).
        j = Signal(16)
        flat = out_buf.as_value()
        row_per_out = Signal()
        as_row = Signal()                        # output words in the table's row layout (copy, narrow)
        m.d.comb += [as_row.eq((self.mode == 3) | self.narrow), row_per_out.eq(self.dtype | as_row)]
        sel8 = flat[:32 * lanes32]
        acc_word = flat[:32 * W]                 # row word j's lanes
        sel32 = acc_word[:32 * lanes32]
        # copy / narrow: row word j's lanes at the element width (lanes past dim zero). Narrow rounds
        # first: floor(v / 2**shift + 1/2) = ((2v >> shift) + 1) >> 1, then saturates int8 lanes.
        elems8, elems32 = [], []
        for i in range(W):
            v = acc_word[32 * i:32 * i + 32].as_signed()
            r = Signal(signed(33), name=f"round{i}")
            m.d.comb += r.eq(((v << 1) >> self.shift) + 1 >> 1)
            sat8 = Mux(r > 127, 127, Mux(r < -128, -128, r))
            elems8.append(Mux(j * W + i < self.dim, Mux(self.narrow, sat8, v)[:8], 0))
            if i < lanes32:
                elems32.append(Mux(j * lanes32 + i < self.dim, Mux(self.narrow, r, v)[:32], 0))
        copied = Mux(self.dtype, Cat(elems32), Cat(elems8))
        lanes = Signal(data.ArrayLayout(signed(32), lanes32))
        m.d.comb += lanes.eq(Mux(self.dtype, sel32, sel8))
        m.submodules.divider = divider = MeanDivider(lanes32)
        mean = self.mode == 1
        m.d.comb += [divider.lanes.eq(lanes), divider.count.eq(Mux(out_count == 0, 1, out_count)),
                     divider.start.eq(out_busy & mean & divider.idle),
                     divider.ack.eq(self.out.valid & self.out.ready)]
        result = Signal(data.ArrayLayout(signed(32), lanes32))
        for i in range(lanes32):
            value = Mux(mean, divider.quotients[i], lanes[i])
            m.d.comb += result[i].eq(Mux(j * lanes32 + i < self.dim, value, 0))
        ready_word = out_busy & (~mean | divider.done)
        m.d.comb += [self.out.valid.eq(ready_word), self.out.payload.eq(Mux(as_row, copied, result))]
        last_out = self.out.valid & self.out.ready & (j == self.out_words - 1)
        m.d.comb += out_free.eq(~out_busy | last_out)
        with m.If(self.out.valid & self.out.ready):
            m.d.sync += flat.eq(Mux(row_per_out, flat[32 * W:], flat[32 * lanes32:]))
            with m.If(last_out):
                m.d.sync += [j.eq(0), out_busy.eq(0)]
            with m.Else():
                m.d.sync += j.eq(j + 1)
        with m.If(s2.valid & s2.final & out_free):          # hand the bag over (also as the last word leaves)
            m.d.sync += [out_buf.eq(Mux(s2.empty, 0, acc_next)), out_count.eq(Mux(s2.empty, 0, count_next)),
                         out_busy.eq(1)]
        m.d.comb += self.busy.eq(out_busy | s2.valid)
        return m


class MeanDivider(wiring.Component):
    """Mode mean's division of ``lanes`` int32 sums by their row count, every lane at once.

    ``start`` (one cycle, while ``idle``) takes ``lanes`` and ``count`` (>= 1); ``_DIV_STEPS`` cycles later
    ``done`` rises with ``quotients[i] = sign(s) * ((2|s| + n) // 2n)`` (``s = lanes[i]``, ``n = count``:
    rounding half away from zero) and holds them until ``ack`` (one cycle) makes it ``idle`` again. A
    radix-2 restoring divider of ``2|s| + n`` (below ``2**_DIV_STEPS``) by ``2n``, one quotient bit per cycle.
    """

    def __init__(self, lanes):
        self.lanes_n = lanes
        super().__init__({"start": In(1), "ack": In(1), "lanes": In(data.ArrayLayout(signed(32), lanes)),
                          "count": In(25), "idle": Out(1), "done": Out(1),
                          "quotients": Out(data.ArrayLayout(signed(32), lanes))})

    def elaborate(self, platform):
        m = Module()
        step = Signal(range(_DIV_STEPS + 1))
        dividing = Signal()
        n = Signal(25)
        m.d.comb += [self.idle.eq(~dividing & (step == 0)), self.done.eq(step == _DIV_STEPS)]
        with m.If(self.start):
            m.d.sync += [n.eq(self.count), dividing.eq(1)]
        for i in range(self.lanes_n):
            s = self.lanes[i]
            num, rem, quo, negative = (Signal(_DIV_STEPS, name=f"num{i}"), Signal(27, name=f"rem{i}"),
                                       Signal(_DIV_STEPS, name=f"quo{i}"), Signal(name=f"neg{i}"))
            with m.If(self.start):
                m.d.sync += [num.eq((Mux(s < 0, -s, s)[:33] << 1) + self.count), rem.eq(0), quo.eq(0),
                             negative.eq(s < 0)]
            trial = Cat(num[-1], rem)
            with m.If(dividing):
                with m.If(trial >= (n << 1)):
                    m.d.sync += [rem.eq(trial - (n << 1)), quo.eq(Cat(1, quo))]
                with m.Else():
                    m.d.sync += [rem.eq(trial), quo.eq(Cat(0, quo))]
                m.d.sync += num.eq(num << 1)
            m.d.comb += self.quotients[i].eq(Mux(negative, -quo[:32], quo[:32]))
        with m.If(dividing):
            m.d.sync += step.eq(step + 1)
            with m.If(step == _DIV_STEPS - 1):
                m.d.sync += dividing.eq(0)
        with m.If(self.ack):
            m.d.sync += step.eq(0)
        return m


class CheckPass(wiring.Component):
    """A GATHER's check pass: a word of offsets and a word of indices per cycle, side by side.

    ``start`` (one cycle) begins a pass over ``off_words`` offset words and ``idx_words`` index words;
    ``n_bags``, ``n_indices``, ``rows``, ``off_words`` and ``idx_words`` hold still until it ends. ``off`` /
    ``idx`` are ready while the pass still wants words of that array (the engine hands it the first words
    of its offsets and indices readers). Sticky results: ``off_bad`` (``off[0] != 0``, a decrease, or
    ``off[n_bags] > n_indices``; int32 compares), ``idx_bad`` (the row field, bits ``[0:31]``, of one of
    the ``n_indices`` index words ``>= rows``), and ``off_last`` = ``off[n_bags]`` once the offsets are checked.
    """

    def __init__(self, config):
        self.config = config
        super().__init__({
            "start": In(1), "n_bags": In(24), "n_indices": In(24), "rows": In(24), "off_words": In(24),
            "idx_words": In(24), "off": In(stream.Signature(config.mem_bits)),
            "idx": In(stream.Signature(config.mem_bits)),
            "off_bad": Out(1), "idx_bad": Out(1), "off_last": Out(25),
        })

    def elaborate(self, platform):
        m = Module()
        pw = self.config.mem_width // 4               # int32 items per word
        k_off, k_idx = Signal(24), Signal(24)         # words checked so far
        carry = Signal(32)                            # last offset of the previous word
        m.d.comb += [self.off.ready.eq(k_off != self.off_words), self.idx.ready.eq(k_idx != self.idx_words)]
        off_in, idx_in = self.off.valid & self.off.ready, self.idx.valid & self.idx.ready
        off_word, idx_word = self.off.payload, self.idx.payload
        off_terms, idx_terms = [], []
        for lane in range(pw):
            item = k_off * pw + lane
            v = off_word[32 * lane:32 * lane + 32].as_signed()
            before = carry.as_signed() if lane == 0 else off_word[32 * (lane - 1):32 * lane].as_signed()
            off_terms.append((item <= self.n_bags) & (((item == 0) & (v != 0)) | ((item != 0) & (v < before))
                                                      | ((item == self.n_bags) & (v > self.n_indices))))
            with m.If(off_in & (item == self.n_bags)):
                m.d.sync += self.off_last.eq(v)
            # the row field of an index word: the bits below the bypass hint
            idx_terms.append((k_idx * pw + lane < self.n_indices)
                             & (idx_word[32 * lane:32 * lane + BYPASS_BIT] >= self.rows))
        with m.If(off_in):
            m.d.sync += [k_off.eq(k_off + 1), carry.eq(off_word[-32:])]
            with m.If(Cat(off_terms).any()):
                m.d.sync += self.off_bad.eq(1)
        with m.If(idx_in):
            m.d.sync += k_idx.eq(k_idx + 1)
            with m.If(Cat(idx_terms).any()):
                m.d.sync += self.idx_bad.eq(1)
        with m.If(self.start):
            m.d.sync += [k_off.eq(0), k_idx.eq(0), self.off_bad.eq(0), self.idx_bad.eq(0)]
        return m


class GatherEngine(wiring.Component):
    """Runs GATHER instructions. ``start`` (one cycle, with ``instr``) -> ``done`` (one cycle, with ``error``).

    Counters: ``busy`` cycles, the row cache's ``lookups``/``hits``/``misses``/``evictions``,
    ``bytes_read`` (bytes of rows read from memory on misses), ``mem_reads``/``mem_writes`` (every
    memory word the engine read or wrote, check pass included).
    """

    OPS = ("GATHER",)
    COUNTERS = ("busy",) + QUEUE_COUNTERS + ("bytes_read", "mem_reads", "mem_writes")

    def __init__(self, config):
        self.config = config
        # side by side with the GEMM engine: reads table, indices, offsets, weights; writes the output
        super().__init__(engine_ports(config, self.COUNTERS, instr_layout("GATHER"), regions=(4, 1)))

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        W = cfg.mem_width
        pw = W // 4                                   # int32 items per word
        f = Signal(instr_layout("GATHER"))

        m.submodules.arbiter = arbiter = MemArbiter(cfg, 5)
        wiring.connect(m, arbiter.mem, wiring.flipped(self.mem))
        readers = {}
        for i, name in enumerate(("off", "idx", "w", "rows")):
            # the rows reader reads misses ahead while the pooling unit works on hits
            depth = ROWS_AHEAD * line_words(cfg) if name == "rows" else None
            readers[name] = m.submodules[f"{name}_reader"] = BlockReader(cfg, depth=depth)
            wiring.connect(m, readers[name].mem, arbiter.port(i))
        writer = arbiter.port(4)
        splitters = {}
        for name in ("off", "idx", "w"):
            splitters[name] = m.submodules[f"{name}_split"] = WordSplitter(cfg.mem_bits, 32, count_bits=25)
        m.submodules.queue = queue = IndexQueue(cfg)
        m.submodules.pool = pool = PoolingUnit(cfg)
        wiring.connect(m, queue.entries, pool.entries)
        wiring.connect(m, queue.reads, readers["rows"].cmd)
        wiring.connect(m, readers["rows"].words, pool.fills)
        for name, port in (("off", queue.offsets), ("idx", queue.indices), ("w", queue.weights)):
            wiring.connect(m, splitters[name].items, port)

        # ---- geometry (registered in SETUP) ----------------------------------------------------
        row_words, out_words = Signal(16), Signal(16)
        table_words, out_total = Signal(48), Signal(48)
        idx_words, off_words = Signal(24), Signal(24)
        error = Signal(8)
        row_bytes = Mux(f.dtype, f.dim << 2, f.dim)
        m.d.comb += [queue.n_bags.eq(f.n_bags), queue.weighted.eq(f.weighted), queue.table_addr.eq(f.table_addr),
                     queue.row_words.eq(row_words),
                     pool.mode.eq(f.mode), pool.dtype.eq(f.dtype), pool.dim.eq(f.dim), pool.row_words.eq(row_words),
                     pool.out_words.eq(out_words), pool.narrow.eq(f.narrow), pool.shift.eq(f.out_shift)]

        def words32(n):
            return (n + pw - 1) >> log2(pw)

        # ---- check pass: the offsets and the indices at once, a word of each per cycle ------------
        # The first off_words / idx_words words of the offsets / indices readers are the check pass's;
        # the main pass's reads of the same arrays are issued right behind them (reads have no side
        # effect and these regions were range checked), but their words wait in the readers until the
        # check passed (MAIN), or are dropped (DRAIN). So are the weights' (read once, by the main pass):
        # every reader must be emptied before DRAIN ends, or the engine never becomes idle.
        in_main, draining = Signal(), Signal()
        m.submodules.check = check = CheckPass(cfg)
        m.d.comb += [check.n_bags.eq(f.n_bags), check.n_indices.eq(f.n_indices), check.rows.eq(f.rows),
                     check.off_words.eq(off_words), check.idx_words.eq(idx_words)]
        off_check, idx_check = check.off.ready, check.idx.ready
        off_seen_bad, idx_seen_bad, off_last = check.off_bad, check.idx_bad, check.off_last
        for name, port in (("off", check.off), ("idx", check.idx), ("w", None)):
            src, split = readers[name].words, splitters[name].words
            checking = port.ready if port is not None else C(0)
            if port is not None:
                m.d.comb += [port.payload.eq(src.payload), port.valid.eq(src.valid)]
            m.d.comb += [split.payload.eq(src.payload), split.valid.eq(src.valid & ~checking & in_main),
                         src.ready.eq(checking | draining | (split.ready & in_main))]

        # ---- reads: the check pass's, then the main pass's behind them --------------------------
        rc = {name: readers[name].cmd for name in ("off", "idx", "w")}
        pending = {name: Signal(name=f"{name}_pending") for name in ("off_check", "idx_check", "off", "idx", "w")}
        offsets_good = ~off_check & ~off_seen_bad     # off_last is known and legal
        main_count = words32(off_last)
        for name, reader, addr, count, when in (
                ("off_check", "off", f.off_addr, off_words, 1),
                ("idx_check", "idx", f.idx_addr, idx_words, 1),
                ("off", "off", f.off_addr, off_words, ~pending["off_check"]),
                ("idx", "idx", f.idx_addr, main_count, ~pending["idx_check"] & offsets_good & (off_last != 0)),
                ("w", "w", f.w_addr, main_count, offsets_good & (off_last != 0))):
            with m.If(pending[name] & when):
                m.d.comb += [rc[reader].valid.eq(1), rc[reader].payload.addr.eq(addr),
                             rc[reader].payload.count.eq(count)]
                with m.If(rc[reader].ready):
                    m.d.sync += pending[name].eq(0)
        no_pending = ~Cat(pending.values()).any()

        # ---- sequencer ------------------------------------------------------------------------
        written = Signal(48)
        all_idle = Cat(r.idle for r in readers.values()).all()
        go = getattr(self, "go", Const(1))
        with m.FSM() as fsm:
            with m.State("IDLE"):
                m.d.comb += self.ready.eq(1)
                with m.If(self.start):
                    m.d.sync += f.eq(self.instr)
                    m.next = "SETUP1"
            with m.State("SETUP1"):
                row_words_now = (row_bytes + W - 1) >> log2(W)
                m.d.sync += [row_words.eq(row_words_now),
                             out_words.eq(Mux((f.mode == 3) | f.narrow, row_words_now, ((f.dim << 2) + W - 1) >> log2(W))),
                             idx_words.eq(words32(f.n_indices)), off_words.eq(words32(f.n_bags + 1))]
                m.next = "SETUP2"
            with m.State("SETUP2"):
                m.d.sync += [table_words.eq(f.rows * row_words), out_total.eq(f.n_bags * out_words)]
                m.next = "CHECK"
            with m.State("CHECK"):
                with m.If((f.weighted & (f.mode != 0)) | (f.narrow & ((f.mode == 1) | (f.mode == 3)))):
                    m.d.sync += error.eq(isa.ERRORS["BAD_MODE"])
                    m.next = "FINISH"
                with m.Elif((f.dim == 0) | (row_words > line_words(cfg))):
                    m.d.sync += error.eq(isa.ERRORS["BAD_SHAPE"])
                    m.next = "FINISH"
                with m.Elif(beyond_memory(cfg, f.table_addr, table_words)
                            | beyond_memory(cfg, f.idx_addr, idx_words)
                            | beyond_memory(cfg, f.off_addr, off_words)
                            | beyond_memory(cfg, f.out_addr, out_total)
                            | (f.weighted & beyond_memory(cfg, f.w_addr, idx_words))):
                    m.d.sync += error.eq(isa.ERRORS["ADDR_RANGE"])
                    m.next = "FINISH"
                with m.Elif(go):            # legal: its first read waits for ``go`` (side by side)
                    m.d.comb += check.start.eq(1)
                    m.d.sync += [error.eq(0), pending["off_check"].eq(1), pending["idx_check"].eq(idx_words != 0),
                                 pending["off"].eq(1), pending["idx"].eq(1), pending["w"].eq(f.weighted)]
                    m.d.comb += queue.start.eq(1)
                    m.next = "DATA_CHECK"
            with m.State("DATA_CHECK"):
                with m.If(off_seen_bad | (~off_check & ~idx_check)):
                    with m.If(off_seen_bad):
                        m.d.sync += error.eq(isa.ERRORS["BAD_OFFSETS"])
                    with m.Elif(idx_seen_bad):
                        m.d.sync += error.eq(isa.ERRORS["INDEX_RANGE"])
                    with m.If(off_seen_bad | idx_seen_bad):
                        m.d.sync += [draining.eq(1), Cat(pending.values()).eq(0)]
                        m.next = "DRAIN"
                    with m.Else():
                        with m.If(off_last == 0):
                            m.d.sync += [pending["idx"].eq(0), pending["w"].eq(0)]
                        m.d.sync += written.eq(0)
                        m.next = "MAIN"
            with m.State("DRAIN"):
                # reads already issued are dropped; nothing was written
                with m.If(all_idle):
                    m.d.sync += draining.eq(0)
                    m.next = "FINISH"
            with m.State("MAIN"):
                m.d.comb += in_main.eq(1)
                with m.If((written == out_total) & queue.done & ~pool.busy & all_idle & no_pending & arbiter.idle):
                    m.next = "FINISH"
            with m.State("FINISH"):
                m.d.comb += [self.done.eq(1), self.error.eq(error)]
                m.next = "IDLE"
        m.d.comb += [splitters["off"].per_block.eq(f.n_bags + 1), splitters["idx"].per_block.eq(off_last),
                     splitters["w"].per_block.eq(off_last)]

        # ---- writer: pooled words to out_addr onwards --------------------------------------------
        m.d.comb += [writer.req.valid.eq(pool.out.valid), writer.req.payload.we.eq(1),
                     writer.req.payload.addr.eq(f.out_addr + written), writer.req.payload.wdata.eq(pool.out.payload),
                     pool.out.ready.eq(writer.req.ready)]
        with m.If(writer.req.valid & writer.req.ready):
            m.d.sync += written.eq(written + 1)

        if hasattr(self, "go"):     # the regions of the instruction in flight, for the dispatcher's hazard check
            L = cfg.addr_bits + 1
            for region, addr, words, valid in zip(
                    (*self.reads, *self.writes), (f.table_addr, f.idx_addr, f.off_addr, f.w_addr, f.out_addr),
                    (table_words, idx_words, off_words, idx_words, out_total), (1, 1, 1, f.weighted, 1)):
                m.d.comb += [region.lo.eq(addr[:L]), region.hi.eq(addr[:L] + words[:L]),
                             region.valid.eq(~fsm.ongoing("IDLE") & valid)]
            m.d.comb += self.checked.eq(fsm.ongoing("IDLE") | fsm.ongoing("MAIN"))

        # ---- counters -----------------------------------------------------------------------------
        c = self.counters
        for name in QUEUE_COUNTERS:
            m.d.comb += getattr(c, name).eq(getattr(queue.counters, name))
        with m.If(~fsm.ongoing("IDLE")):
            m.d.sync += c.busy.eq(c.busy + 1)
        with m.If(queue.reads.valid & queue.reads.ready):
            m.d.sync += c.bytes_read.eq(c.bytes_read + (row_words << log2(W)))
        req = self.mem.req
        with m.If(req.valid & req.ready):
            with m.If(req.payload.we):
                m.d.sync += c.mem_writes.eq(c.mem_writes + 1)
            with m.Else():
                m.d.sync += c.mem_reads.eq(c.mem_reads + 1)
        return m
