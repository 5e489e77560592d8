"""GEMM engine: a hardware sequencer that runs a whole M x K x N matmul from one instruction.

Dataflow (every arrow is a valid/ready stream, so every unit can stall without losing data)::

    A reader --> A splitter --> skid --\\
                                        feeder --> MacArray --> row FIFO --> RequantUnit --> packer --> writer
    B reader --> B splitter --> skid --/                                              ^
    P reader (bias, multiplier, shift per column block) -------------------/
    Q reader (accumulate mode: the int32 partial sums at c_addr, one row per output row) --/

Tiles are visited problem outer (a batched instruction runs ``batch`` same-shape problems whose operands
lie back to back), then column block, then row block (``t = jb * mt + ib`` within a problem): B, P and C
addresses advance linearly over the whole batch, A restarts at its problem's base for every column
block. One setup and one pipeline fill/drain serve the whole batch. The three readers run
ahead of the array as far as their credit-limited FIFOs allow, so the loads of the next tile overlap the
compute of the current one (the FIFOs are the double buffers). The feeder starts a tile only when the
row FIFO has room for all of its output rows, so the array itself never stalls.

In accumulate mode (``Config.accumulate``, ISA field ``accumulate``) the Q reader streams the int32 tiles
already at ``c_addr`` in tile order and each output row takes its partial sums in place of the bias. A
tile's partial sums are read before its result is written, and results are written in the same order at
no larger offsets (an output is at most 32 bits), so the result may overwrite the partial sums in place.
"""
from amaranth import *
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from ..spec import isa
from ..spec.config import ceil_div
from ..spec.gemm_layout import OUT_BITS, PARAM_WORDS
from .dsp import registered_product
from .engine_port import engine_ports, log2
from .instr import instr_layout
from .mac_array import MacArray
from .memory import BlockReader, MemArbiter, MemPort
from .requant import RequantUnit
from .skid import ReadyRegister, SkidBuffer

__all__ = ["GemmEngine", "GemmSetup", "OperandReads", "TileFeeder", "ColumnParams", "TilePacker", "WordSplitter"]


class WordSplitter(wiring.Component):
    """Splits memory words into ``item_bits``-wide items, ``per_block`` items per block.

    A block starts on a word boundary; the unused items of a block's last word are dropped.
    ``per_block`` must be stable from two cycles before a command's first word until its last.
    """

    def __init__(self, word_bits, item_bits, count_bits=16):
        self.lanes = word_bits // item_bits
        self.item_bits = item_bits
        super().__init__({"words": In(stream.Signature(word_bits)), "items": Out(stream.Signature(item_bits)),
                          "per_block": In(count_bits)})

    def elaborate(self, platform):
        m = Module()
        lane = Signal(range(max(2, self.lanes)))
        index = Signal.like(self.per_block)
        last_index = Signal.like(self.per_block)       # per_block - 1, registered (FPGA timing)
        m.d.sync += last_index.eq(self.per_block - 1)
        m.d.comb += [self.items.valid.eq(self.words.valid),
                     self.items.payload.eq(self.words.payload.word_select(lane, self.item_bits))]
        # index == last_index, as a register: the comparison does not reach ``words.ready`` (FPGA timing)
        block_end = Signal()
        with m.If(self.items.valid & self.items.ready):
            m.d.sync += block_end.eq(Mux(block_end, last_index == 0, index + 1 == last_index))
        with m.Else():
            m.d.sync += block_end.eq(index == last_index)
        with m.If(self.items.valid & self.items.ready):
            m.d.sync += [lane.eq(lane + 1), index.eq(index + 1)]
            end_of_word = (lane == self.lanes - 1) | block_end
            with m.If(block_end):
                m.d.sync += index.eq(0)
            with m.If(end_of_word):
                m.d.sync += lane.eq(0)
            m.d.comb += self.words.ready.eq(end_of_word)
        return m


class TilePacker(wiring.Component):
    """The GEMM output writer: requantized rows of ``lanes`` elements -> packed memory words -> writes.

    A row's elements are packed at the width of ``out_format`` (:data:`~tridsa.spec.gemm_layout.OUT_BITS`),
    rows after one another in a word; a word is written when full or at a tile's last row (``rows`` of
    the array). ``clear`` (held while no job runs) restarts at ``c_addr``; ``written`` counts the words
    the memory accepted since. One word waits for the port while the next one fills.
    """

    def __init__(self, config, lanes, addr_width):
        self.config, self.lanes = config, lanes
        super().__init__({"rows": In(stream.Signature(RequantUnit.output_layout(lanes))),
                          "req": Out(MemPort(config).members["req"].signature),
                          "out_format": In(2), "clear": In(1), "c_addr": In(addr_width), "written": Out(addr_width)})

    def elaborate(self, platform):
        m = Module()
        cfg, C, R = self.config, self.lanes, self.config.rows
        word = Signal(cfg.mem_bits)               # rows of the word being assembled
        lane = Signal(range(cfg.mem_bits // (4 * C) + 1))
        row_in_tile = Signal(range(R))
        c_ptr = Signal.like(self.c_addr)
        pend_valid, pend_addr, pend_data = Signal(), Signal(cfg.addr_bits), Signal(cfg.mem_bits)
        merged = Signal(cfg.mem_bits)
        rows_per_word = Signal(range(cfg.mem_bits // (4 * C) + 1))
        y = self.rows.payload
        with m.Switch(self.out_format):
            for code, bits in OUT_BITS.items():
                with m.Case(code):
                    per_word = cfg.mem_bits // (C * bits)
                    packed = Cat(y[j][:bits] for j in range(C))
                    m.d.comb += rows_per_word.eq(per_word)
                    with m.Switch(lane):
                        for l in range(per_word):
                            with m.Case(l):
                                m.d.comb += merged.eq(word | (packed << (l * C * bits)))
        req = self.req
        m.d.comb += [self.rows.ready.eq(~pend_valid | req.ready),
                     req.valid.eq(pend_valid), req.payload.we.eq(1),
                     req.payload.addr.eq(pend_addr), req.payload.wdata.eq(pend_data)]
        with m.If(req.valid & req.ready):
            m.d.sync += [pend_valid.eq(0), self.written.eq(self.written + 1)]
        with m.If(self.rows.valid & self.rows.ready):
            emit = (lane == rows_per_word - 1) | (row_in_tile == R - 1)
            m.d.sync += row_in_tile.eq(Mux(row_in_tile == R - 1, 0, row_in_tile + 1))
            with m.If(emit):
                m.d.sync += [pend_valid.eq(1), pend_addr.eq(c_ptr), pend_data.eq(merged), c_ptr.eq(c_ptr + 1),
                             word.eq(0), lane.eq(0)]
            with m.Else():
                m.d.sync += [word.eq(merged), lane.eq(lane + 1)]
        with m.If(self.clear):
            m.d.sync += [c_ptr.eq(self.c_addr), self.written.eq(0), word.eq(0), lane.eq(0), row_in_tile.eq(0),
                         pend_valid.eq(0)]
        return m


REGIONS = ("a", "b", "c", "p")        # the regions of a GEMM instruction (A, B, C, parameters)


def _block_read(config):
    """A block read command for a :class:`~tridsa.hw.memory.BlockReader` of the GEMM engine (blocks of up to
    ``2**(addr_bits + 1) - 1`` words)."""
    return stream.Signature(data.StructLayout({"addr": config.addr_bits, "count": config.addr_bits + 1}))


class GemmSetup(wiring.Component):
    """The front's setup and checks of one GEMM instruction.

    ``instr`` is latched in every cycle while ``ready`` (not only on ``start``: ``start`` then steers only
    the state, not the enables of a few hundred registers; FPGA timing). ``start`` begins the setup:
    three cycles of geometry, ``SCALE`` (one cycle per bit of ``batch`` > 1: the batch's region sizes by
    shift-and-add), ``CHECK`` (``checking``: every range and overlap comparison registered). Then
    ``checked`` holds, with ``legal`` and ``fault`` (the :data:`~tridsa.spec.isa.ERRORS` code of an illegal instruction,
    0 when legal, as :func:`tridsa.sw.gemm_golden.check_gemm` specifies) and every output stable, until
    ``release`` (the front is done with the instruction; ``ready`` again in the next cycle).

    Sizes and pointers are ``L = addr_bits + 1`` bits wide, not 32: tile counts, block sizes and region
    sizes saturate at ``2**L - 1`` > ``mem_depth``. A saturated value makes its region out of range anyway
    (ADDR_RANGE, or BAD_SHAPE first), and every value of a legal instruction is exact and fits. Of each
    32-bit address only the low L bits (``low``) and "a higher bit is set" are kept (an address with a high
    bit set is beyond memory, as in ``beyond_memory``). ``reach`` is ``low + `` the batch's words of each
    region (valid from ``CHECK`` on), ``end`` the same registered in ``CHECK``.

    ``serial_products``: the three products of the geometry (``mt * a_bw``, ``nt * b_bw``, ``mt * nt``)
    by shift and add over the ``L`` bits of ``mt`` and ``nt`` (a ``MULTIPLY`` state of ``L`` cycles) instead
    of three multipliers (DSPs on an FPGA, which the compact engine's array needs every one of). Without
    it the three are :func:`~tridsa.hw.dsp.registered_product` s (a hard multiplier's input and output
    registers), their operands taken a cycle early so that the states and cycles are the same.
    """

    def __init__(self, config, serial_products=False):
        self.config, self.serial_products = config, serial_products
        L = config.addr_bits + 1
        words = data.StructLayout({name: L for name in REGIONS})
        reach = data.StructLayout({name: L + 1 for name in REGIONS})      # not truncated: compared with mem_depth
        super().__init__({
            "instr": In(instr_layout("GEMM")), "start": In(1), "release": In(1),
            "ready": Out(1), "checking": Out(1), "checked": Out(1), "legal": Out(1), "fault": Out(8),
            "f": Out(instr_layout("GEMM")),                     # the instruction
            "k_rows": Out(16), "mt": Out(L), "nt": Out(L),      # k-steps of a tile, row and column blocks
            "mt_last": Out(L), "nt_last": Out(L),               # mt - 1, nt - 1
            "a_bw": Out(L), "b_bw": Out(L), "a_words": Out(L),  # words of an A / B block, of one problem's A
            # words per tile of the C region = 2**tile_shift (accumulate: the int32 partial sums), of the
            # output = 2**out_shift
            "tile_shift": Out(4), "out_shift": Out(4),
            "low": Out(words), "reach": Out(reach), "end": Out(words), "c_total": Out(L),
            "out_total": Out(L),                                # words of the batch's output (CHECK)
        })

    def elaborate(self, platform):
        m = Module()
        cfg, f = self.config, self.f
        R, C, W = cfg.rows, cfg.cols, cfg.mem_width
        L = cfg.addr_bits + 1

        def saturate(value):
            return Mux(value[L:].any(), (1 << L) - 1, value[:L]) if len(value) > L else value

        k_rows, mt, nt, a_bw, b_bw = self.k_rows, self.mt, self.nt, self.a_bw, self.b_bw
        tile_shift, out_shift = self.tile_shift, self.out_shift
        tiles = Signal(2 * L)
        problem = {"a": Signal(2 * L), "b": Signal(2 * L), "c": Signal(2 * L + 15), "p": Signal(L + 2)}
        assert PARAM_WORDS == 3
        products = [problem["c"].eq(tiles << tile_shift), problem["p"].eq((nt << 1) + nt)]     # nt * 3: shift, add
        step = {name: Signal(L, name=f"{name}_step") for name in problem}     # problem words << bits done
        total = {name: Signal(L, name=f"{name}_total") for name in problem}   # words of the whole batch
        left = Signal(16)                                               # bits of batch still to add
        high = {name: Signal(name=f"{name}_high") for name in problem}
        zero_size = Signal()
        beyond = {name: Signal(name=f"{name}_beyond") for name in problem}    # registered in CHECK
        meets_c = {name: Signal(name=f"{name}_meets_c") for name in ("a", "b", "p")}
        bad_mode, bad_shape = Signal(), Signal()                          # registered in CHECK
        for name in REGIONS:
            m.d.comb += [self.low[name].eq(getattr(f, f"{name}_addr")[:L]),
                         self.reach[name].eq(self.low[name] + total[name])]     # one adder per region
        low, reach = self.low, self.reach
        m.d.comb += self.c_total.eq(total["c"])
        tw = {code: ceil_div(R * C * bits, cfg.mem_bits) for code, bits in OUT_BITS.items()}
        assert all(words & (words - 1) == 0 for words in tw.values())       # powers of two: a shift
        errors = isa.ERRORS
        m.d.comb += self.legal.eq(~(bad_mode | bad_shape | Cat(*beyond.values()).any() | Cat(*meets_c.values()).any()))
        m.d.comb += self.fault.eq(Mux(bad_mode, errors["BAD_MODE"], Mux(bad_shape, errors["BAD_SHAPE"],
                                  Mux(Cat(*beyond.values()).any(), errors["ADDR_RANGE"],
                                      Mux(Cat(*meets_c.values()).any(), errors["OVERLAP"], 0)))))

        i = self.instr
        mt_now, nt_now = saturate((i.m + R - 1) >> log2(R)), saturate((i.n + C - 1) >> log2(C))
        a_bw_now = saturate((k_rows + W // R - 1) >> log2(W // R))
        b_bw_now = saturate((k_rows + W // C - 1) >> log2(W // C))
        if self.serial_products:                # multiplicands shifted left, multipliers right, L steps
            mt_bits, nt_bits, count = Signal(L), Signal(L), Signal(range(L))
            a_step, b_step, mt_step = Signal(2 * L), Signal(2 * L), Signal(2 * L)
        else:
            # Registered products (latency 2: a hard multiplier's input and output registers, no fabric
            # routing inside the multiply): ``tiles`` from the operands of the starting cycle is there in
            # SETUP3, ``mt * a_bw`` and ``nt * b_bw`` from SETUP2's are there in SETUP4 (their operands do
            # not change from SETUP2 on).
            m.d.comb += tiles.eq(registered_product(m, mt_now, nt_now, "tiles_product"))
            m.d.comb += [problem["a"].eq(registered_product(m, mt, a_bw_now, "a_product")),
                         problem["b"].eq(registered_product(m, nt, b_bw_now, "b_product"))]
        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.ready.eq(1)
                m.d.sync += [high[name].eq(getattr(i, f"{name}_addr")[L:].any()) for name in problem]
                m.d.sync += [f.eq(i), zero_size.eq((i.m == 0) | (i.k == 0) | (i.n == 0)),
                             k_rows.eq(Mux(i.int4, (i.k + 1) >> 1, i.k) if cfg.int4 else i.k),   # INT4: BAD_MODE
                             mt.eq(mt_now), nt.eq(nt_now), left.eq(Mux(i.batch == 0, 1, i.batch))]
                with m.Switch(i.out_format):
                    for code, words in tw.items():
                        with m.Case(code):
                            m.d.sync += [out_shift.eq(log2(words)),
                                         tile_shift.eq(Mux(i.accumulate, log2(tw[0]), log2(words)))]
                with m.If(self.start):
                    m.next = "SETUP2"
            with m.State("SETUP2"):
                m.d.sync += [a_bw.eq(a_bw_now), b_bw.eq(b_bw_now), self.mt_last.eq(mt - 1), self.nt_last.eq(nt - 1)]
                if self.serial_products:
                    m.d.sync += [problem["a"].eq(0), problem["b"].eq(0), tiles.eq(0), count.eq(0),
                                 mt_bits.eq(mt), nt_bits.eq(nt), a_step.eq(a_bw_now), b_step.eq(b_bw_now),
                                 mt_step.eq(mt)]
                    m.next = "MULTIPLY"
                else:
                    m.next = "SETUP3"
            if self.serial_products:
                with m.State("MULTIPLY"):
                    with m.If(mt_bits[0]):
                        m.d.sync += problem["a"].eq(problem["a"] + a_step)
                    with m.If(nt_bits[0]):
                        m.d.sync += [problem["b"].eq(problem["b"] + b_step), tiles.eq(tiles + mt_step)]
                    m.d.sync += [mt_bits.eq(mt_bits >> 1), nt_bits.eq(nt_bits >> 1), a_step.eq(a_step << 1),
                                 b_step.eq(b_step << 1), mt_step.eq(mt_step << 1), count.eq(count + 1)]
                    with m.If(count == L - 1):
                        m.next = "SETUP3"
            with m.State("SETUP3"):
                m.d.sync += products
                m.next = "SETUP4"
            with m.State("SETUP4"):
                m.d.sync += self.a_words.eq(saturate(problem["a"]))
                for name, words in problem.items():
                    m.d.sync += [step[name].eq(saturate(words)), total[name].eq(Mux(left == 1, saturate(words), 0))]
                m.next = "SCALE"
                with m.If(left == 1):                   # one problem: its words are the total, no scaling
                    m.next = "CHECK"
            with m.State("SCALE"):
                # total = batch * words, least significant bit of batch first
                for name in problem:
                    m.d.sync += [total[name].eq(saturate(total[name] + Mux(left[0], step[name], 0))),
                                 step[name].eq(saturate(step[name] << 1))]
                m.d.sync += left.eq(left >> 1)
                with m.If(left[1:] == 0):
                    m.next = "CHECK"
            with m.State("CHECK"):
                m.d.comb += self.checking.eq(1)
                m.d.sync += [bad_mode.eq((f.int4 & (not cfg.int4)) | (f.rounding == 3) | (~f.requant & (f.out_format != 0))
                                       | (f.accumulate & (not cfg.accumulate)) | (~f.b_signed & (not cfg.unsigned_b))),
                             bad_shape.eq(zero_size)]
                for name in problem:
                    m.d.sync += [self.end[name].eq(reach[name]), beyond[name].eq(high[name] | (reach[name] > cfg.mem_depth))]
                m.d.sync += self.out_total.eq(total["c"] >> (tile_shift - out_shift)[:4])
                for name in meets_c:      # [addr, addr+total) meets [c_addr, c_addr+c_total); used when in range
                    m.d.sync += meets_c[name].eq((low[name] < reach["c"]) & (low["c"] < reach[name]))
                m.next = "CHECKED"
            with m.State("CHECKED"):
                m.d.comb += self.checked.eq(1)
                with m.If(self.release):
                    m.next = "IDLE"
        return m


class OperandReads(wiring.Component):
    """The front's address generators: one A and one B block read command per tile.

    Tiles go problem outer, then column block (``jb``), then row block (``ib``): A's pointer steps by a
    block (``a_bw`` words) per row block and restarts at its problem's base for every column block; B's
    steps by a block (``b_bw``) per column block. ``load`` (one cycle) starts at ``a_addr`` / ``b_addr``;
    commands are offered while ``run``. Each generator runs until its pointer (A: its problem base) has
    passed the last block's (``a_final`` / ``b_final``, given with ``load``). That test is made when the
    pointer moves and kept in a register, so a command's ``valid`` is a register and no adder feeds a
    comparator; the block-index tests compare with registered ``mt_last``, ``nt_last`` (FPGA timing).
    """

    def __init__(self, config):
        L = config.addr_bits + 1
        super().__init__({"load": In(1), "run": In(1), "a_addr": In(L), "b_addr": In(L), "a_final": In(L),
                          "b_final": In(L), "a_words": In(L), "a_bw": In(L), "b_bw": In(L), "mt_last": In(L),
                          "nt_last": In(L), "a": Out(_block_read(config)), "b": Out(_block_read(config))})

    def elaborate(self, platform):
        m = Module()
        a_ib, a_jb, a_ptr, a_base = (Signal.like(self.a_addr, name=n) for n in ("a_ib", "a_jb", "a_ptr", "a_base"))
        b_ib, b_ptr = Signal.like(self.b_addr, name="b_ib"), Signal.like(self.b_addr, name="b_ptr")
        a_final, b_final = Signal.like(self.a_final), Signal.like(self.b_final)
        a_more, b_more = Signal(), Signal()                    # reads left
        with m.If(self.load):          # regions are non-empty
            m.d.sync += [a_ib.eq(0), a_jb.eq(0), a_ptr.eq(self.a_addr), a_base.eq(self.a_addr), b_ib.eq(0),
                         b_ptr.eq(self.b_addr), a_more.eq(1), b_more.eq(1), a_final.eq(self.a_final),
                         b_final.eq(self.b_final)]
        ra, rb = self.a, self.b
        m.d.comb += [ra.payload.addr.eq(a_ptr), ra.payload.count.eq(self.a_bw), ra.valid.eq(self.run & a_more),
                     rb.payload.addr.eq(b_ptr), rb.payload.count.eq(self.b_bw), rb.valid.eq(self.run & b_more)]
        next_base = a_base + self.a_words
        with m.If(ra.valid & ra.ready):
            with m.If(a_ib != self.mt_last):
                m.d.sync += [a_ib.eq(a_ib + 1), a_ptr.eq(a_ptr + self.a_bw)]
            with m.Elif(a_jb != self.nt_last):
                m.d.sync += [a_ib.eq(0), a_jb.eq(a_jb + 1), a_ptr.eq(a_base)]
            with m.Else():                                      # next problem
                m.d.sync += [a_ib.eq(0), a_jb.eq(0), a_base.eq(next_base), a_ptr.eq(next_base),
                             a_more.eq(a_base != a_final)]
        with m.If(rb.valid & rb.ready):
            with m.If(b_ib == self.mt_last):
                m.d.sync += [b_ib.eq(0), b_ptr.eq(b_ptr + self.b_bw), b_more.eq(b_ptr != b_final)]
            with m.Else():
                m.d.sync += b_ib.eq(b_ib + 1)
        return m


class TileFeeder(wiring.Component):
    """Passes k-steps (an A column of ``rows`` bytes and a B row of ``cols`` bytes) to the MAC array.

    ``fire`` passes one, while ``run``, when both operands are valid, a tile starts only when the row
    FIFO (``row_depth`` rows, ``row_pop`` when one leaves) has room for all of its ``rows`` output rows
    (so the array never stalls), and a tile ends no sooner than ``min_tile_cycles`` after the previous
    one. ``first``/``last`` (of a tile's ``k_rows`` k-steps, set by ``load``) and the start condition are
    registers computed a cycle ahead, so ``fire`` is a few gates from registers (it fans out to the
    operand buffers and the array).
    """

    def __init__(self, rows, cols, row_depth, min_tile_cycles):
        self.rows, self.row_depth, self.min_tile_cycles = rows, row_depth, min_tile_cycles
        super().__init__({"a": In(stream.Signature(8 * rows)), "b": In(stream.Signature(8 * cols)),
                          "run": In(1), "load": In(1), "k_rows": In(16), "row_pop": In(1),
                          "fire": Out(1), "first": Out(1), "last": Out(1)})

    def elaborate(self, platform):
        m = Module()
        R, k_rows, first, last, fire = self.rows, self.k_rows, self.first, self.last, self.fire
        single = Signal()                             # k_rows == 1
        k_left = Signal(16)                           # k-steps of the tile after this one
        reserved = Signal(range(self.row_depth + 1))  # output rows promised to started tiles
        can_start = Signal(init=1)                    # reserved + R <= row_depth
        since_last = Signal(range(self.min_tile_cycles + 1), init=self.min_tile_cycles)
        can_end = since_last >= self.min_tile_cycles
        with m.If(self.load):
            m.d.sync += [first.eq(1), last.eq(k_rows == 1), single.eq(k_rows == 1), k_left.eq(k_rows - 1)]
        m.d.comb += fire.eq(self.run & self.a.valid & self.b.valid & (~first | can_start) & (~last | can_end))
        m.d.comb += [self.a.ready.eq(fire), self.b.ready.eq(fire)]
        next_reserved = reserved + Mux(fire & first, R, 0) - self.row_pop
        m.d.sync += [reserved.eq(next_reserved), can_start.eq(next_reserved + R <= self.row_depth)]
        with m.If(fire & last):
            m.d.sync += since_last.eq(1)
        with m.Elif(~can_end):
            m.d.sync += since_last.eq(since_last + 1)
        with m.If(fire):
            m.d.sync += first.eq(last)
            with m.If(last):
                m.d.sync += [k_left.eq(k_rows - 1), last.eq(single)]
            with m.Else():
                m.d.sync += [k_left.eq(k_left - 1), last.eq(k_left == 1)]
        return m


class ColumnParams(wiring.Component):
    """The back's per-column parameters: one block read of ``PARAM_WORDS`` words (bias, multiplier,
    shift of ``cols`` columns) per column block of the job, each held while its block's rows are taken.
    ``shift`` is held as the requant unit takes it: its low 6 bits, at most 62 (clamped as it loads, so
    no comparison sits before the requant input; FPGA timing).

    ``take`` (the back takes a job: ``busy`` from the next cycle on) starts the reads at ``p_addr``; they
    run until the pointer has passed ``p_final`` (the last block's). After a block's words, ``have_rows``
    holds for ``mt * rows`` rows (``row_taken`` pulses once per row); then the next block's words load.
    """

    def __init__(self, config):
        L, C = config.addr_bits + 1, config.cols
        self.config = config
        super().__init__({"take": In(1), "busy": In(1), "p_addr": In(L), "p_final": In(L), "mt": In(L),
                          "cmd": Out(_block_read(config)), "words": In(stream.Signature(config.mem_bits)),
                          "bias": Out(data.ArrayLayout(32, C)), "mult": Out(data.ArrayLayout(32, C)),
                          "shift": Out(data.ArrayLayout(6, C)), "have_rows": Out(1), "row_taken": In(1)})

    def elaborate(self, platform):
        m = Module()
        cfg, C = self.config, self.config.cols
        L = cfg.addr_bits + 1
        p_ptr, p_final, more = Signal(L), Signal(L), Signal()
        with m.If(self.take):
            m.d.sync += [p_ptr.eq(self.p_addr), more.eq(1), p_final.eq(self.p_final)]
        cmd = self.cmd
        m.d.comb += [cmd.payload.addr.eq(p_ptr), cmd.payload.count.eq(PARAM_WORDS), cmd.valid.eq(self.busy & more)]
        with m.If(cmd.valid & cmd.ready):
            m.d.sync += [p_ptr.eq(p_ptr + PARAM_WORDS), more.eq(p_ptr != p_final)]

        p_slot = Signal(range(PARAM_WORDS))
        rows_left = Signal(L + log2(cfg.rows))   # rows of the current column block still to take
        have_rows = self.have_rows               # rows_left != 0, as a register (it gates the requant input)
        with m.If(~self.busy):
            m.d.sync += [p_slot.eq(0), rows_left.eq(0), have_rows.eq(0)]
        words = self.words
        m.d.comb += words.ready.eq(self.busy & ~have_rows)
        with m.If(words.valid & words.ready):
            for index, reg in enumerate((self.bias, self.mult)):
                with m.If(p_slot == index):
                    m.d.sync += reg.eq(words.payload[:32 * C])
            with m.If(p_slot == 2):
                for j in range(C):
                    shift = words.payload[32 * j:32 * j + 6]
                    m.d.sync += self.shift[j].eq(Mux(shift > 62, 62, shift))
            with m.If(p_slot == PARAM_WORDS - 1):
                m.d.sync += [p_slot.eq(0), rows_left.eq(self.mt * cfg.rows), have_rows.eq(1)]
            with m.Else():
                m.d.sync += p_slot.eq(p_slot + 1)
        with m.If(self.row_taken):
            m.d.sync += [rows_left.eq(rows_left - 1), have_rows.eq(rows_left != 1)]
        return m


class GemmEngine(wiring.Component):
    """Runs GEMM instructions. ``start`` (one cycle, with ``instr``, when ``ready``) -> ``done`` (one cycle,
    with ``error``), in instruction order.

    Two stages overlap consecutive instructions. The *front* (:class:`GemmSetup`, :class:`OperandReads`,
    :class:`TileFeeder`) takes the next instruction (``ready``) as soon as it has fed the array the last
    k-step of the previous one; the *back* (:class:`ColumnParams`, Q reads, requant, :class:`TilePacker`)
    drains the previous instruction's rows meanwhile. A legal
    instruction leaves the front's checks for a one-entry ``slot`` (the back's next job) when the slot is
    empty and, while the back runs, only if its A and B regions do not meet the back's C region (a read
    after write waits for the write: the back's job is then done). The back's writes follow the previous
    job's in order, and its P/Q reads start after the previous job's last write, so no other hazard
    exists between two GEMMs. An illegal instruction reports its error only when the slot and the back are
    empty (after every earlier instruction is done), and nothing after it has started. Without
    ``Config.overlap`` the front holds its instruction until the back is done and the back's job is a view
    of the front's registers (no slot, job or hazard logic). Side by side with the gather engine a legal
    instruction also waits in DECIDE for ``go`` (:mod:`tridsa.hw.engines`).

    Illegal fields (mode, zero size, region of the batch beyond memory, C overlapping an input) end the
    command at once with an error code and no memory access. The front's states after the setup's checks:
    ``DECIDE`` (a legal instruction that may go issues its first A/B reads in this cycle), ``RUN``,
    ``FAIL`` (with overlap: an illegal instruction waits to report in order).
    """

    OPS = ("GEMM",)
    COUNTERS = ("busy", "feed")

    def __init__(self, config):
        self.config = config
        # side by side with the gather engine: the front's A, B, P (and in accumulate mode C) reads and C
        # write, the slot's and the back job's P (C) reads and C writes
        super().__init__(engine_ports(config, self.COUNTERS, instr_layout("GEMM"),
                                      regions=(8 if config.accumulate else 5, 3)))

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        R, C = cfg.rows, cfg.cols
        L = cfg.addr_bits + 1

        reader_names = ("a", "b", "p", "q") if cfg.accumulate else ("a", "b", "p")
        m.submodules.arbiter = arbiter = MemArbiter(cfg, len(reader_names) + 1)
        wiring.connect(m, arbiter.mem, wiring.flipped(self.mem))
        readers = {}
        for idx, name in enumerate(reader_names):
            # a block is at most 2**L - 1 words
            readers[name] = m.submodules[f"{name}_reader"] = BlockReader(cfg, count_bits=L)
            wiring.connect(m, readers[name].mem, arbiter.port(idx))
        writer = arbiter.port(len(reader_names))
        m.submodules.a_split = a_split = WordSplitter(cfg.mem_bits, 8 * R)
        m.submodules.b_split = b_split = WordSplitter(cfg.mem_bits, 8 * C)
        wiring.connect(m, readers["a"].words, a_split.words)
        wiring.connect(m, readers["b"].words, b_split.words)
        # The feeder takes k-steps from skid buffers: its fire decision (both operands valid) does not reach
        # back through the splitters into the readers' buffers (FPGA timing).
        m.submodules.a_items = a_items = SkidBuffer(8 * R)
        m.submodules.b_items = b_items = SkidBuffer(8 * C)
        wiring.connect(m, a_split.items, a_items.i)
        wiring.connect(m, b_split.items, b_items.i)
        if cfg.accumulate:      # partial sums: one int32 row of C lanes per item, a tile's R rows per block
            m.submodules.q_split = q_split = WordSplitter(cfg.mem_bits, 32 * C)
            wiring.connect(m, readers["q"].words, q_split.words)
            m.d.comb += q_split.per_block.eq(R)
        m.submodules.array = array = MacArray(R, C, hard_multipliers=cfg.hard_multipliers, int4=cfg.int4,
                                              family=cfg.pe_family or "auto", row_group=cfg.row_group)
        m.submodules.requant = requant = RequantUnit(C, per_cycle=cfg.lanes_requant, stages=cfg.requant_stages)
        # Rows of ~3 tiles are in flight between tile start and requant (skew + pipeline); 4 tiles of
        # buffering keep short-K tiles (k_rows near min_tile_cycles) streaming back to back.
        row_depth = 4 * R
        m.submodules.rows = rows = fifo.SyncFIFOBuffered(width=32 * C, depth=row_depth)

        m.submodules.setup = setup = GemmSetup(cfg)
        m.submodules.operands = operands = OperandReads(cfg)
        m.submodules.feeder = feeder = TileFeeder(R, C, row_depth, array.min_tile_cycles)
        m.submodules.params = params = ColumnParams(cfg)
        f, low, end, reach = setup.f, setup.low, setup.end, setup.reach
        m.d.comb += [setup.instr.eq(self.instr), setup.start.eq(self.start), self.ready.eq(setup.ready),
                     a_split.per_block.eq(setup.k_rows), b_split.per_block.eq(setup.k_rows)]

        # ---- the back's job: what the output stage needs of an instruction that passed its checks ----
        g_layout = instr_layout("GEMM")
        job_layout = data.StructLayout({
            **{name: g_layout[name].shape for name in ("requant", "rounding", "zero_point", "out_format", "relu",
                                                      "accumulate")},
            "mt": L, "p_addr": L, "p_final": L, "c_addr": L, "c_end": L, "c_words": L, "out_total": L})
        slot_full, back_busy, back_done = Signal(), Signal(), Signal()
        running = Signal()                                      # the A/B reads and the feeder run
        fire, last = feeder.fire, feeder.last
        fail_code = Signal(8)
        slot = Signal(job_layout)
        front_job = [slot.mt.eq(setup.mt), slot.p_addr.eq(low.p), slot.p_final.eq(end.p - PARAM_WORDS),
                     slot.c_addr.eq(low.c), slot.c_end.eq(end.c), slot.c_words.eq(setup.c_total),
                     slot.out_total.eq(setup.out_total)]
        front_job += [getattr(slot, name).eq(getattr(f, name)) for name in
                      ("requant", "rounding", "zero_point", "out_format", "relu", "accumulate")]
        if cfg.overlap:
            # the slot and the back's job are registers: the front moves on to the next instruction
            job = Signal(job_layout)
            tiles_left = Signal(L)                              # tiles the front has still to start (RUN)
            # Read after write: A or B meets the C region the back still writes. ``meets_job`` is that
            # comparison registered against the job the back holds in the next cycle (the slot's, if the
            # back takes it now), from the region ends CHECK computes (``reach``) or has registered (``end``):
            # DECIDE's go decision then starts at registers (FPGA timing).
            meets_job = Signal()
            hazard = back_busy & meets_job
        else:
            # the front holds its instruction until the back is done: the job is a view of the front's registers
            m.d.comb += front_job
            job, hazard = slot, Const(0)

        # ---- front: the setup's checks, then DECIDE, RUN (or FAIL) ----------------------------
        legal = Signal()                                        # DECIDE: the instruction passed its checks
        go = getattr(self, "go", Const(1))                      # no hazard with the other engine (side by side)
        with m.FSM() as fsm:
            with m.State("DECIDE"):                             # waits for the setup's checks
                with m.If(setup.checked):
                    m.d.comb += legal.eq(setup.legal)
                    # An illegal instruction ends here, before any memory access; with overlap it reports in
                    # FAIL, once every earlier instruction is done.
                    with m.If(~legal):
                        if cfg.overlap:
                            m.d.sync += fail_code.eq(setup.fault)
                            m.next = "FAIL"
                        else:
                            m.d.comb += [self.done.eq(1), self.error.eq(setup.fault), setup.release.eq(1)]
                    with m.Elif(~slot_full & ~hazard & go):      # go: the A/B readers start in this cycle
                        m.d.comb += running.eq(1)
                        m.d.sync += slot_full.eq(1)
                        if cfg.overlap:
                            m.d.sync += [tiles_left.eq(setup.c_total >> setup.tile_shift), *front_job]
                        m.next = "RUN"
            if cfg.overlap:
                with m.State("FAIL"):                   # report in order: after every earlier instruction
                    with m.If(~slot_full & ~back_busy):
                        m.d.comb += [self.done.eq(1), self.error.eq(fail_code), setup.release.eq(1)]
                        m.next = "DECIDE"
            with m.State("RUN"):
                m.d.comb += running.eq(1)
                if cfg.overlap:         # ready for the next instruction once the last k-step is fed
                    with m.If(fire & last & (tiles_left == 1)):
                        m.d.comb += setup.release.eq(1)
                        m.next = "DECIDE"
                    with m.If(fire & last):
                        m.d.sync += tiles_left.eq(tiles_left - 1)
                else:                   # ready when the back is done
                    with m.If(back_done):
                        m.d.comb += setup.release.eq(1)
                        m.next = "DECIDE"

        if cfg.overlap:
            take = ~back_busy & slot_full
            next_c_addr, next_c_end = Mux(take, slot.c_addr, job.c_addr), Mux(take, slot.c_end, job.c_end)

            def meets_next_job(ends):
                return (((low.a < next_c_end) & (next_c_addr < ends.a))
                        | ((low.b < next_c_end) & (next_c_addr < ends.b)))
            with m.If(setup.checking):
                m.d.sync += meets_job.eq(meets_next_job(reach))
            with m.Else():
                m.d.sync += meets_job.eq(meets_next_job(end))

        if hasattr(self, "go"):     # the regions of the instructions in flight, for the dispatcher's hazard check
            front = legal | fsm.ongoing("RUN")
            param_end = {name: job_.p_final + PARAM_WORDS for name, job_ in (("slot", slot), ("job", job))}
            reads = [(low.a, end.a, front), (low.b, end.b, front), (low.p, end.p, front),
                     (slot.p_addr, param_end["slot"], slot_full), (job.p_addr, param_end["job"], back_busy)]
            if cfg.accumulate:
                reads += [(low.c, end.c, front & f.accumulate), (slot.c_addr, slot.c_end, slot_full & slot.accumulate),
                          (job.c_addr, job.c_end, back_busy & job.accumulate)]
            writes = [(low.c, end.c, front), (slot.c_addr, slot.c_end, slot_full), (job.c_addr, job.c_end, back_busy)]
            for region, (lo, hi, valid) in zip((*self.reads, *self.writes), reads + writes):
                m.d.comb += [region.lo.eq(lo), region.hi.eq(hi), region.valid.eq(valid)]
            m.d.comb += self.checked.eq(setup.ready | front)

        # ---- back: takes the slot's job when idle, done (below) when its last write reached the memory ----
        take_job = ~back_busy & slot_full
        with m.If(take_job):
            if cfg.overlap:
                m.d.sync += job.eq(slot)
            m.d.sync += [slot_full.eq(0), back_busy.eq(1)]
        with m.If(~setup.ready | back_busy):
            m.d.sync += self.counters.busy.eq(self.counters.busy + 1)

        # ---- address generators: one block read command per tile (A, B) or column block (P) ----
        wiring.connect(m, operands.a, readers["a"].cmd)
        wiring.connect(m, operands.b, readers["b"].cmd)
        m.d.comb += [operands.load.eq(setup.checking), operands.run.eq(running),
                     operands.a_addr.eq(low.a), operands.b_addr.eq(low.b),
                     operands.a_final.eq(reach.a - setup.a_words), operands.b_final.eq(reach.b - setup.b_bw),
                     operands.a_words.eq(setup.a_words), operands.a_bw.eq(setup.a_bw), operands.b_bw.eq(setup.b_bw),
                     operands.mt_last.eq(setup.mt_last), operands.nt_last.eq(setup.nt_last)]
        wiring.connect(m, params.cmd, readers["p"].cmd)
        m.d.comb += [params.take.eq(take_job), params.busy.eq(back_busy), params.p_addr.eq(slot.p_addr),
                     params.p_final.eq(slot.p_final), params.mt.eq(job.mt)]
        if cfg.accumulate:     # one read command for the whole batch's partial sums
            q_more = Signal()
            with m.If(take_job):
                m.d.sync += q_more.eq(slot.accumulate)
            rq = readers["q"].cmd
            m.d.comb += [rq.payload.addr.eq(job.c_addr), rq.payload.count.eq(job.c_words), rq.valid.eq(back_busy & q_more)]
            with m.If(rq.valid & rq.ready):
                m.d.sync += q_more.eq(0)

        # ---- feeder ---------------------------------------------------------------------------
        # the readers fetch exactly the batch's k-rows, so the splitters run dry after the last tile
        wiring.connect(m, a_items.o, feeder.a)
        wiring.connect(m, b_items.o, feeder.b)
        m.d.comb += [feeder.run.eq(running), feeder.load.eq(setup.checking), feeder.k_rows.eq(setup.k_rows),
                     feeder.row_pop.eq(rows.r_en & rows.r_rdy),
                     array.a.eq(a_items.o.payload), array.b.eq(b_items.o.payload),
                     array.ctrl.valid.eq(fire), array.ctrl.first.eq(feeder.first), array.ctrl.last.eq(last),
                     array.mode.int4.eq(f.int4), array.mode.a_signed.eq(f.a_signed),
                     array.mode.b_signed.eq(f.b_signed)]
        with m.If(fire):
            m.d.sync += self.counters.feed.eq(self.counters.feed + 1)
        m.d.comb += [rows.w_data.eq(array.out_row), rows.w_en.eq(array.out_valid)]

        # ---- output stage: attach per-column parameters, requantize --------------------------
        wiring.connect(m, readers["p"].words, params.words)
        rq_in = requant.i
        partials_ready = Const(1)
        row_bias = params.bias
        if cfg.accumulate:        # accumulate: the row's partial sums replace the bias
            partials_ready = ~job.accumulate | q_split.items.valid
            m.d.comb += q_split.items.ready.eq(job.accumulate & rq_in.ready & rq_in.valid)
            row_bias = Signal(data.ArrayLayout(32, C))
            m.d.comb += row_bias.eq(Mux(job.accumulate, q_split.items.payload, params.bias.as_value()))
        m.d.comb += [rq_in.valid.eq(back_busy & params.have_rows & rows.r_rdy & partials_ready),
                     rows.r_en.eq(rq_in.ready & rq_in.valid), rq_in.payload.x.eq(rows.r_data),
                     params.row_taken.eq(rq_in.valid & rq_in.ready)]
        for j in range(C):
            m.d.comb += [rq_in.payload.bias[j].eq(row_bias[j]), rq_in.payload.multiplier[j].eq(params.mult[j][:31]),
                         rq_in.payload.shift[j].eq(params.shift[j])]
        m.d.comb += [requant.enable.eq(job.requant), requant.rounding.eq(job.rounding),
                     requant.zero_point.eq(job.zero_point), requant.out_format.eq(job.out_format),
                     requant.relu.eq(job.relu)]

        # ---- packer: rows of out_bits elements -> words -> writes ----------------------------
        m.submodules.packer = packer = TilePacker(cfg, C, L)
        # The requant unit sees a registered ready (its stall enables reach every pipeline register; FPGA
        # timing); the packer gets each row in the same cycle as it would straight from the unit.
        m.submodules.requant_out = requant_out = ReadyRegister(requant.o.payload.shape())
        wiring.connect(m, requant.o, requant_out.i)
        wiring.connect(m, requant_out.o, packer.rows)
        wiring.connect(m, packer.req, writer.req)
        m.d.comb += [packer.out_format.eq(job.out_format), packer.clear.eq(~back_busy), packer.c_addr.eq(slot.c_addr)]
        m.d.comb += back_done.eq(back_busy & (packer.written == job.out_total) & ~arbiter.pending[len(reader_names)])
        with m.If(back_done):
            m.d.comb += self.done.eq(1)
            m.d.sync += back_busy.eq(0)
        return m
