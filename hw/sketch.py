"""RNG + sketch engine: Philox4x32-10 lanes feeding a sketch multiply ``Y = A @ Omega``, Omega never stored.

Dataflow (valid/ready streams; every unit can stall)::

    OmegaSource (counter sequencer + rng_lanes PhiloxCores) --+--> SketchDistMap --\\
                                                              |                     SketchArray --> tile writer
    A reader --> WordSplitter (one column of a row block) ----+--------------------/
                                                              \\--> RNG width adapter --> RNG writer   (RNG)

SKETCH visits output tiles of ``rows x 4 * rng_lanes`` (row block ``ib`` outer, column tile ``jt``
inner). For a tile the source walks the K rows of Omega, one beat of ``rng_lanes`` Philox blocks per
row (counter ``base + r * ceil(k/4) + jt * rng_lanes + lane``, the layout of :mod:`tridsa.sw.sketch_dist`),
while the A reader streams the row block's K columns; the array adds ``A[i, r] * Omega[r, c]`` into
``rows x 4 rng_lanes`` int32 accumulators: one addition per adder per cycle, the Rademacher and sparse
sign distributions with add/subtract only. A finished tile moves to a shadow register in the cycle of
its last row and is written while the next tile accumulates. RNG uses the same source with a single
"tile" and writes the stream through a power-of-two width adapter.

Errors (:mod:`tridsa.sw.sketch_golden` defines the priority) end the instruction before any write.
"""
from amaranth import *
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..spec import isa
from ..spec.config import ceil_div
from ..spec.sketch_layout import DISTRIBUTIONS, PARAM_NAMES, rng_lanes_used
from .engine_port import beyond_memory, engine_ports, log2
from .gemm import WordSplitter
from .instr import instr_layout
from .memory import BlockReader, MemArbiter, MemPort
from .philox import BLOCK_LAYOUT, KEY_LAYOUT, PhiloxCore
from .sketch_dist import SketchDistMap

__all__ = ["OmegaSource", "RngWriter", "SketchArray", "SketchEngine", "SketchGeometry", "TileWriter",
           "ceil_div_constant"]


def ceil_div_constant(x_bits: int, d: int) -> tuple:
    """``(magic, shift)`` with ``ceil(x / d) == ((x + d - 1) * magic) >> shift`` for all ``x < 2**x_bits``.

    Division by the constant ``d`` as one multiplication (the exactness is checked exhaustively).
    """
    import numpy as np
    n_bits = x_bits + 1
    shift = n_bits + (d - 1).bit_length()
    magic = ceil_div(1 << shift, d)
    x = np.arange(1 << x_bits, dtype=np.uint64)
    x = x + np.uint64(d - 1)
    assert np.array_equal((x * np.uint64(magic)) >> np.uint64(shift), x // np.uint64(d))
    return magic, shift


class OmegaSource(wiring.Component):
    """Philox blocks for a tiled walk over Omega, ``lanes`` blocks per beat.

    A command ``{key, counter, rows, step, tile_step, tiles_j, tiles_i}`` (all counts >= 1) produces, for
    ``ti < tiles_i``, ``tj < tiles_j``, ``r < rows`` (``r`` fastest), one beat whose lane ``l`` is
    ``philox4x32_10(counter + tj * tile_step + r * step + l, key)`` (128-bit counter arithmetic).
    ``cmd`` is ready whenever no command runs. The ``lanes`` :class:`~tridsa.hw.philox.PhiloxCore`
    pipelines see the same valid and ready, so they advance in lockstep.
    """

    def __init__(self, lanes: int):
        self.lanes = lanes
        cmd = data.StructLayout({"key": KEY_LAYOUT, "counter": 128, "rows": 32, "step": 16, "tile_step": 16,
                                 "tiles_j": 16, "tiles_i": 16})
        super().__init__({"cmd": In(stream.Signature(cmd)),
                          "o": Out(stream.Signature(data.ArrayLayout(BLOCK_LAYOUT, lanes))),
                          "busy": Out(1)})

    def elaborate(self, platform):
        m = Module()
        c = Signal(self.cmd.payload.shape())
        cur, tile_base = Signal(128), Signal(128)
        r, ti, tj = Signal(32), Signal(16), Signal(16)
        busy = self.busy
        cores = [PhiloxCore() for _ in range(self.lanes)]
        for lane, core in enumerate(cores):
            m.submodules[f"lane{lane}"] = core
            m.d.comb += [core.i.valid.eq(busy), core.i.payload.key.eq(c.key),
                         core.i.payload.counter.eq((cur + lane)[:128]),
                         core.o.ready.eq(self.o.ready), self.o.payload[lane].eq(core.o.payload)]
        m.d.comb += [self.o.valid.eq(cores[0].o.valid), self.cmd.ready.eq(~busy)]
        issue = busy & cores[0].i.ready
        with m.If(self.cmd.valid & self.cmd.ready):
            m.d.sync += [c.eq(self.cmd.payload), cur.eq(self.cmd.payload.counter),
                         tile_base.eq(self.cmd.payload.counter), r.eq(0), ti.eq(0), tj.eq(0), busy.eq(1)]
        with m.Elif(issue):
            with m.If(r == c.rows - 1):
                m.d.sync += r.eq(0)
                with m.If(tj == c.tiles_j - 1):
                    m.d.sync += [tj.eq(0), ti.eq(ti + 1), tile_base.eq(c.counter), cur.eq(c.counter)]
                    with m.If(ti == c.tiles_i - 1):
                        m.d.sync += busy.eq(0)
                with m.Else():
                    next_base = (tile_base + c.tile_step)[:128]
                    m.d.sync += [tj.eq(tj + 1), tile_base.eq(next_base), cur.eq(next_base)]
            with m.Else():
                m.d.sync += [r.eq(r + 1), cur.eq((cur + c.step)[:128])]
        return m


class SketchArray(wiring.Component):
    """``rows x cols`` int32 accumulators: ``acc[i, c] (+)= a[i] * e[c]`` for one (A column, Omega row) pair.

    ``fire`` (one cycle) adds a beat; ``first`` starts a tile (accumulators restart from 0), ``last``
    ends it: the sums go to ``tile`` (row-major, element ``(i, c)`` at bits ``32 (i cols + c)``) instead
    of the accumulators. ``sign_mode`` (entries in {-1, 0, 1}) uses add/subtract only; otherwise each
    adder multiplies the 9-bit signed ``a`` by the 32-bit entry. Columns with ``col_ok`` low add 0.
    Sums wrap modulo 2**32.
    """

    def __init__(self, rows: int, cols: int):
        self.rows, self.cols = rows, cols
        super().__init__({"a": In(data.ArrayLayout(8, rows)), "e": In(data.ArrayLayout(signed(32), cols)),
                          "col_ok": In(cols), "a_signed": In(1), "sign_mode": In(1),
                          "fire": In(1), "first": In(1), "last": In(1),
                          "tile": Out(32 * rows * cols)})

    def elaborate(self, platform):
        m = Module()
        for i in range(self.rows):
            a = Signal(signed(9), name=f"a{i}")
            m.d.comb += a.eq(Mux(self.a_signed, self.a[i].as_signed(), self.a[i]))
            for c in range(self.cols):
                e = self.e[c]
                acc = Signal(32, name=f"acc{i}_{c}")
                term = Signal(32, name=f"term{i}_{c}")
                with m.If(~self.col_ok[c] | (self.sign_mode & (e == 0))):
                    m.d.comb += term.eq(0)
                with m.Elif(self.sign_mode):
                    m.d.comb += term.eq(Mux(e[31], -a, a))
                with m.Else():
                    m.d.comb += term.eq(a * e)
                total = (Mux(self.first, 0, acc) + term)[:32]
                with m.If(self.fire):
                    with m.If(self.last):
                        m.d.sync += self.tile[32 * (i * self.cols + c):][:32].eq(total)
                    with m.Else():
                        m.d.sync += acc.eq(total)
        return m


class SketchGeometry(wiring.Component):
    """Sizes of an RNG or SKETCH instruction, in registers: ``instr`` must hold still for three cycles
    (the engine's SETUP states) before every output is that instruction's.

    RNG: ``n_words`` memory words, ``beats`` Philox beats. SKETCH: ``mt`` row blocks, ``nct`` column tiles,
    ``a_bw`` words of an A row block, ``a_words`` / ``y_words`` of A and Y, ``dist`` the distribution code.
    ``step``: counter blocks per Omega row (RNG: the lanes of one beat).
    """

    def __init__(self, config):
        self.config = config
        self.tile_rows, self.tile_cols = config.rows, 4 * config.rng_lanes
        self.tile_words = ceil_div(self.tile_rows * self.tile_cols * 32, config.mem_bits)
        self.rng_lanes = rng_lanes_used(config)
        super().__init__({"instr": In(isa.INSTR_BITS), "n_words": Out(33), "beats": Out(33), "mt": Out(16),
                          "nct": Out(16), "a_bw": Out(24), "step": Out(16), "tiles": Out(32), "a_words": Out(40),
                          "y_words": Out(40), "dist": Out(2)})

    def elaborate(self, platform):
        m = Module()
        R, C, W = self.tile_rows, self.tile_cols, self.config.mem_width
        P = W // 4                                   # uint32 per memory word
        Q = 4 * self.rng_lanes                       # uint32 per RNG beat (power of two)
        fr = data.View(instr_layout("RNG"), self.instr)
        fs = data.View(instr_layout("SKETCH"), self.instr)
        is_rng = fr.opcode == isa.OPCODES["RNG"].code
        magic, shift = ceil_div_constant(16, C)
        m.d.sync += [self.n_words.eq((fr.n + P - 1) >> log2(P)),          # first cycle
                     self.mt.eq((fs.m + R - 1) >> log2(R)),
                     self.nct.eq(((fs.k + C - 1) * magic) >> shift),
                     self.a_bw.eq(((fs.K << log2(R)) + W - 1) >> log2(W)),
                     self.step.eq(Mux(is_rng, self.rng_lanes, (fs.k + 3) >> 2)),
                     self.dist.eq(fs.dist)]
        if Q >= P:                                                         # second
            m.d.sync += self.beats.eq((self.n_words + Q // P - 1) >> log2(Q // P))
        else:
            m.d.sync += self.beats.eq(self.n_words << log2(P // Q))
        m.d.sync += [self.tiles.eq(self.mt * self.nct), self.a_words.eq(self.mt * self.a_bw),
                     self.y_words.eq(self.tiles * self.tile_words)]         # third
        return m


class TileWriter(wiring.Component):
    """Writes a finished output tile to memory while the next one accumulates (the shadow tile).

    ``capture`` (one cycle, while not ``busy``) takes ``tile`` (``tile_bits``, zero padded to whole words);
    ``busy`` stays high until its words are written at consecutive addresses from ``addr`` (given with
    ``start``, which also clears ``written``, the count of words written since).
    """

    def __init__(self, config, tile_bits: int):
        self.config = config
        self.tile_words = ceil_div(tile_bits, config.mem_bits)
        super().__init__({"start": In(1), "addr": In(32), "tile": In(tile_bits), "capture": In(1),
                          "busy": Out(1), "written": Out(40), "mem": Out(MemPort(self.config))})

    def elaborate(self, platform):
        m = Module()
        cfg, last_word = self.config, self.tile_words - 1
        ptr = Signal(32)
        w_idx = Signal(range(max(2, self.tile_words)))
        pad = self.tile_words * cfg.mem_bits - len(self.tile)
        tile = Cat(self.tile, Const(0, pad)) if pad else self.tile
        req = self.mem.req
        m.d.comb += [req.valid.eq(self.busy), req.payload.we.eq(1), req.payload.addr.eq(ptr),
                     req.payload.wdata.eq(tile.word_select(w_idx, cfg.mem_bits))]
        with m.If(self.capture):
            m.d.sync += self.busy.eq(1)
        with m.If(req.valid & req.ready):
            m.d.sync += [ptr.eq(ptr + 1), self.written.eq(self.written + 1),
                         w_idx.eq(Mux(w_idx == last_word, 0, w_idx + 1))]
            with m.If(w_idx == last_word):
                m.d.sync += self.busy.eq(0)
        with m.If(self.start):
            m.d.sync += [ptr.eq(self.addr), self.written.eq(0), w_idx.eq(0), self.busy.eq(0)]
        return m


class RngWriter(wiring.Component):
    """Writes the RNG word stream: beats of ``4 * lanes`` uint32 (a power of two) through a width adapter
    to memory words, at consecutive addresses from ``addr`` (given with ``start``).

    While ``active`` the first ``n_words`` words are written; the rest of the last beat is dropped. ``done``
    once ``beats`` beats were taken and ``n_words`` words written. The first beat may come two cycles
    after reset (the width adapter's registered block length, :class:`~tridsa.hw.gemm.WordSplitter`).
    """

    def __init__(self, config, lanes: int):
        self.config = config
        self.per_beat = 4 * lanes                    # uint32 per beat
        super().__init__({"start": In(1), "addr": In(config.addr_bits), "n_words": In(33), "beats": In(33),
                          "active": In(1), "beat": In(stream.Signature(32 * self.per_beat)),
                          "mem": Out(MemPort(config)), "done": Out(1)})

    def elaborate(self, platform):
        m = Module()
        cfg, Q, P = self.config, self.per_beat, self.config.mem_width // 4
        word_valid, word_ready, word = Signal(), Signal(), Signal(cfg.mem_bits)
        beats_in = Signal(33)
        take = Signal()
        m.d.comb += self.beat.ready.eq(take)
        if Q >= P:
            m.submodules.split = split = WordSplitter(32 * Q, cfg.mem_bits)
            m.d.comb += [split.per_block.eq(Q // P), split.words.payload.eq(self.beat.payload),
                         split.words.valid.eq(self.beat.valid), take.eq(split.words.valid & split.words.ready),
                         word_valid.eq(split.items.valid), word.eq(split.items.payload),
                         split.items.ready.eq(word_ready)]
        else:
            per = P // Q
            packed, slot, full = Signal(cfg.mem_bits), Signal(range(per)), Signal()
            m.d.comb += [take.eq(self.beat.valid & ~full), word_valid.eq(full), word.eq(packed)]
            with m.If(take):
                m.d.sync += [packed.word_select(slot, 32 * Q).eq(self.beat.payload),
                             slot.eq(Mux(slot == per - 1, 0, slot + 1))]
                with m.If(slot == per - 1):
                    m.d.sync += full.eq(1)
            with m.If(word_valid & word_ready):
                m.d.sync += full.eq(0)
        with m.If(take):
            m.d.sync += beats_in.eq(beats_in + 1)
        ptr, written = Signal(cfg.addr_bits), Signal(33)
        wanted = written < self.n_words
        req = self.mem.req
        m.d.comb += [req.valid.eq(self.active & word_valid & wanted), req.payload.we.eq(1),
                     req.payload.addr.eq(ptr), req.payload.wdata.eq(word),
                     word_ready.eq(Mux(wanted, req.ready, 1))]
        with m.If(req.valid & req.ready):
            m.d.sync += [ptr.eq(ptr + 1), written.eq(written + 1)]
        with m.If(self.start):
            m.d.sync += [ptr.eq(self.addr), written.eq(0), beats_in.eq(0)]
        m.d.comb += self.done.eq((beats_in == self.beats) & (written == self.n_words) & ~word_valid)
        return m


class SketchEngine(wiring.Component):
    """Runs RNG and SKETCH instructions. ``start`` (one cycle, with ``instr``) -> ``done`` (with ``error``).

    Counters: ``busy`` (cycles from start to done), ``fire`` (cycles the adder array adds a beat),
    ``random_words`` (uint32 words of Philox output used), ``read_words`` / ``write_words`` (memory words
    moved; Omega is not among them).
    """

    OPS = ("RNG", "SKETCH")
    COUNTERS = ("busy", "fire", "random_words", "read_words", "write_words")

    def __init__(self, config):
        self.config = config
        self.lanes = config.rng_lanes
        self.tile_rows, self.tile_cols = config.rows, 4 * config.rng_lanes
        self.p_words = ceil_div(32 * len(PARAM_NAMES), config.mem_bits)
        self.rng_lanes = rng_lanes_used(config)
        super().__init__(engine_ports(config, self.COUNTERS))

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        R, C, L = self.tile_rows, self.tile_cols, self.lanes
        ins = Signal(isa.INSTR_BITS)
        fr = data.View(instr_layout("RNG"), ins)
        fs = data.View(instr_layout("SKETCH"), ins)
        is_rng = fr.opcode == isa.OPCODES["RNG"].code
        new_rng = data.View(instr_layout("RNG"), self.instr)          # fields of the starting instruction
        new_sketch = data.View(instr_layout("SKETCH"), self.instr)

        m.submodules.arbiter = arbiter = MemArbiter(cfg, 4)
        wiring.connect(m, arbiter.mem, wiring.flipped(self.mem))
        m.submodules.a_reader = a_reader = BlockReader(cfg)
        m.submodules.p_reader = p_reader = BlockReader(cfg)
        wiring.connect(m, a_reader.mem, arbiter.port(0))
        wiring.connect(m, p_reader.mem, arbiter.port(1))
        m.submodules.a_split = a_split = WordSplitter(cfg.mem_bits, 8 * R)
        wiring.connect(m, a_reader.words, a_split.words)
        m.submodules.source = source = OmegaSource(L)
        m.submodules.dist = dist = SketchDistMap(4 * L)
        m.submodules.array = array = SketchArray(R, C)

        # ---- geometry of the latched instruction (ready after SETUP1..3) ---------------------------
        m.submodules.geometry = geometry = SketchGeometry(cfg)
        m.d.comb += geometry.instr.eq(ins)
        n_words, beats, mt, nct = geometry.n_words, geometry.beats, geometry.mt, geometry.nct
        a_bw, step, a_words, y_words = geometry.a_bw, geometry.step, geometry.a_words, geometry.y_words
        dist_code = geometry.dist
        error = Signal(8)
        params = Signal(self.p_words * cfg.mem_bits)
        pv = data.View(data.ArrayLayout(32, len(PARAM_NAMES)), params[:32 * len(PARAM_NAMES)])
        p = {name: pv[i] for i, name in enumerate(PARAM_NAMES)}
        running = Signal()

        rng_done, sketch_done = Signal(), Signal()
        p_count = Signal(range(self.p_words + 1))
        with m.FSM() as fsm:
            with m.State("IDLE"):
                m.d.comb += self.ready.eq(1)
                with m.If(self.start):
                    m.d.sync += ins.eq(self.instr)
                    m.next = "SETUP1"
            with m.State("SETUP1"):
                m.next = "SETUP2"
            with m.State("SETUP2"):
                m.next = "SETUP3"
            with m.State("SETUP3"):
                m.next = "CHECK"
            with m.State("CHECK"):
                with m.If(is_rng):
                    with m.If(fr.n == 0):
                        m.d.sync += error.eq(isa.ERRORS["BAD_SHAPE"])
                        m.next = "FINISH"
                    with m.Elif(beyond_memory(cfg, fr.out_addr, n_words)):
                        m.d.sync += error.eq(isa.ERRORS["ADDR_RANGE"])
                        m.next = "FINISH"
                    with m.Else():
                        m.d.sync += [error.eq(0), p["key0"].eq(fr.key0), p["key1"].eq(fr.key1)]
                        m.d.sync += [p[f"ctr{i}"].eq(fr[f"ctr{i}"]) for i in range(4)]
                        m.next = "LAUNCH"
                with m.Else():
                    with m.If((fs.m == 0) | (fs.K == 0) | (fs.k == 0)):
                        m.d.sync += error.eq(isa.ERRORS["BAD_SHAPE"])
                        m.next = "FINISH"
                    with m.Elif(beyond_memory(cfg, fs.a_addr, a_words) | beyond_memory(cfg, fs.y_addr, y_words)
                                | beyond_memory(cfg, fs.p_addr, self.p_words)):
                        m.d.sync += error.eq(isa.ERRORS["ADDR_RANGE"])
                        m.next = "FINISH"
                    with m.Else():
                        m.d.sync += [error.eq(0), p_count.eq(0)]
                        m.next = "LOAD"
            with m.State("LOAD"):
                m.d.comb += [p_reader.cmd.valid.eq(p_count == 0), p_reader.cmd.payload.addr.eq(fs.p_addr),
                             p_reader.cmd.payload.count.eq(self.p_words)]
                with m.If(p_reader.cmd.valid & p_reader.cmd.ready):
                    m.d.sync += p_count.eq(1)
                with m.If(p_count != 0):
                    m.d.comb += p_reader.words.ready.eq(1)
                    with m.If(p_reader.words.valid):
                        m.d.sync += [params.word_select((p_count - 1)[:len(p_count)], cfg.mem_bits).eq(p_reader.words.payload),
                                     p_count.eq(p_count + 1)]
                        with m.If(p_count == self.p_words):
                            m.next = "PCHECK"
            with m.State("PCHECK"):
                sparse = dist_code == DISTRIBUTIONS.index("sparse_sign")
                uniform = dist_code == DISTRIBUTIONS.index("uniform")
                with m.If((sparse & (p["threshold"] > (1 << 31)))
                          | (uniform & ((p["lo"].as_signed() + p["span_m1"]) > (1 << 31) - 1))):
                    m.d.sync += error.eq(isa.ERRORS["BAD_MODE"])
                    m.next = "FINISH"
                with m.Else():
                    m.next = "LAUNCH"
            with m.State("LAUNCH"):
                sc = source.cmd.payload
                m.d.comb += [source.cmd.valid.eq(1), sc.key[0].eq(p["key0"]), sc.key[1].eq(p["key1"]),
                             sc.counter.eq(Cat(p["ctr0"], p["ctr1"], p["ctr2"], p["ctr3"])),
                             sc.rows.eq(Mux(is_rng, beats, fs.K)), sc.step.eq(step),
                             sc.tile_step.eq(L), sc.tiles_j.eq(Mux(is_rng, 1, nct)),
                             sc.tiles_i.eq(Mux(is_rng, 1, mt))]
                m.next = "RUN"
            with m.State("RUN"):
                m.d.comb += running.eq(1)
                with m.If(Mux(is_rng, rng_done, sketch_done) & arbiter.idle):
                    m.next = "FINISH"
            with m.State("FINISH"):
                m.d.comb += [self.done.eq(1), self.error.eq(error)]
                m.next = "IDLE"
        cnt = self.counters
        with m.If(~fsm.ongoing("IDLE")):
            m.d.sync += cnt.busy.eq(cnt.busy + 1)
        req = self.mem.req
        with m.If(req.valid & req.ready):
            with m.If(req.payload.we):
                m.d.sync += cnt.write_words.eq(cnt.write_words + 1)
            with m.Else():
                m.d.sync += cnt.read_words.eq(cnt.read_words + 1)
        beat_taken = source.o.valid & source.o.ready
        with m.If(beat_taken):
            m.d.sync += cnt.random_words.eq(cnt.random_words + Mux(is_rng, 4 * self.rng_lanes, 4 * L))

        # ---- SKETCH: A column reads (one block read per tile), distributions, adder array ------
        a_ib, a_jt, a_ptr = Signal(16), Signal(16), Signal(32)
        with m.If(self.start):
            m.d.sync += [a_ib.eq(0), a_jt.eq(0), a_ptr.eq(new_sketch.a_addr)]
        ra = a_reader.cmd
        m.d.comb += [ra.payload.addr.eq(a_ptr), ra.payload.count.eq(a_bw),
                     ra.valid.eq(running & ~is_rng & (a_ib < mt)), a_split.per_block.eq(fs.K)]
        with m.If(ra.valid & ra.ready):
            with m.If(a_jt == nct - 1):
                m.d.sync += [a_jt.eq(0), a_ib.eq(a_ib + 1), a_ptr.eq(a_ptr + a_bw)]
            with m.Else():
                m.d.sync += a_jt.eq(a_jt + 1)

        m.d.comb += [dist.code.eq(dist_code), dist.threshold.eq(p["threshold"]), dist.lo.eq(p["lo"]),
                     dist.span.eq(p["span_m1"] + 1)]
        for lane in range(L):
            for j in range(4):
                m.d.comb += dist.i.payload[4 * lane + j].eq(source.o.payload[lane][j])

        r_idx, col_base = Signal(16), Signal(17)
        shadow_busy = Signal()
        first, last = r_idx == 0, r_idx == fs.K - 1
        fire = (running & ~is_rng & a_split.items.valid & dist.o.valid & (~last | ~shadow_busy))
        m.d.comb += [a_split.items.ready.eq(fire), dist.o.ready.eq(fire),
                     array.a.eq(a_split.items.payload), array.e.eq(dist.o.payload),
                     array.col_ok.eq(Cat((col_base + c) < fs.k for c in range(C))),
                     array.a_signed.eq(fs.a_signed), array.sign_mode.eq(dist_code < 2),
                     array.fire.eq(fire), array.first.eq(first), array.last.eq(last)]
        with m.If(fire):
            m.d.sync += [cnt.fire.eq(cnt.fire + 1), r_idx.eq(Mux(last, 0, r_idx + 1))]
            with m.If(last):
                m.d.sync += col_base.eq(Mux(col_base + C >= fs.k, 0, col_base + C))
        with m.If(self.start):
            m.d.sync += [r_idx.eq(0), col_base.eq(0)]

        # ---- SKETCH: tile writer (drains the shadow tile while the next tile accumulates) ------
        m.submodules.tile_writer = tile_writer = TileWriter(cfg, R * C * 32)
        wiring.connect(m, tile_writer.mem, arbiter.port(2))
        m.d.comb += [tile_writer.start.eq(self.start), tile_writer.addr.eq(new_sketch.y_addr),
                     tile_writer.tile.eq(array.tile), tile_writer.capture.eq(fire & last),
                     shadow_busy.eq(tile_writer.busy), sketch_done.eq(tile_writer.written == y_words)]

        # ---- RNG: width adapter from beats of Q uint32 to memory words, then the writer --------
        m.submodules.rng_writer = rng = RngWriter(cfg, self.rng_lanes)
        wiring.connect(m, rng.mem, arbiter.port(3))
        m.d.comb += [rng.start.eq(self.start), rng.addr.eq(new_rng.out_addr), rng.n_words.eq(n_words),
                     rng.beats.eq(beats), rng.active.eq(running & is_rng),
                     rng.beat.valid.eq(source.o.valid & is_rng),
                     rng.beat.payload.eq(Cat(source.o.payload[lane].as_value() for lane in range(self.rng_lanes))),
                     source.o.ready.eq(Mux(is_rng, rng.beat.ready, dist.i.ready)),
                     dist.i.valid.eq(source.o.valid & ~is_rng), rng_done.eq(rng.done)]
        return m
