"""The compact GEMM engine (``Config.gemm_engine = "compact"``): the same GEMM instruction as
:class:`tridsa.hw.gemm.GemmEngine`, bit for bit, in the fewest logic cells, for the smallest FPGAs.

Dataflow, one memory read port and the memory's write port (:func:`tridsa.hw.memory.write_port`)::

    memory --A words (one k-row each)-----------------------> BroadcastArray --readout--> row buffer
    memory --B block (once per column block)--> B buffer ---/                                 |
    memory --P words (bias, multiplier, shift; per tile)--> parameter registers --> RequantUnit
                                                                      packer --> write port <-/

One sequencer issues every read, in this order: per column block its B block (into a block RAM buffer,
reused by every row block), then per tile its A block but for the last word, the tile's 3 parameter words,
the last A word, then ``rows + 1`` cycles (GAP) in which the readout copies the tile's sums, a row per
cycle, into the row buffer (block RAM) before the next tile's first k-step restarts them. A k-step is an A
word (``mem_width == rows`` bytes) and a k-row of the B buffer: the array takes one per cycle while A
words arrive. The tile's parameters and last A word are read only when the row buffer is free (the
requant unit took every element of the previous tile), so a tile's rows never overwrite rows still to be
requantized and the parameter registers are reloaded only then. The requant unit (one lane) takes the
elements in order; the packer shifts them into words that the write port takes as they fill; the engine
is done when its last word is written.

Tiles go as in the systolic engine (problem, column block, row block) and read and write the same
layouts (:mod:`tridsa.spec.gemm_layout`); the setup and its checks are :class:`~tridsa.hw.gemm.GemmSetup`'s
(serial products: no DSP). Without memory stalls its cycles are exact in
:mod:`tridsa.sw.gemm_compact_timing`.
"""
from amaranth import *
from amaranth.lib import data, wiring
from amaranth.lib.wiring import Out

from ..spec.config import ceil_div
from ..spec.gemm_layout import OUT_BITS, PARAM_WORDS
from .broadcast_array import BroadcastArray
from .mac_array import or_reduce
from .engine_port import engine_ports, log2
from .gemm import GemmSetup
from .instr import instr_layout
from .memory import block_ram, registered_read, write_port
from .requant import RequantUnit

__all__ = ["CompactGemmEngine", "b_buffer_words"]

_NONE, _A, _B, _P = range(4)           # what a read in flight is for (its tag)


def b_buffer_words(config) -> int:
    """Words of the B buffer: the largest B block of a legal GEMM (its K is at most ``mem_bytes / rows``, as
    its A block fits the memory; see ``Config.acc_bits``)."""
    return ceil_div(config.mem_bytes // max(config.rows, config.cols) * config.cols, config.mem_width)


class CompactGemmEngine(wiring.Component):
    """Runs GEMM instructions (the engine protocol of :mod:`tridsa.hw.engines`), one at a time; see the
    module docstring. ``wmem``: the memory's write port."""

    OPS = ("GEMM",)
    COUNTERS = ("busy", "feed")

    def __init__(self, config):
        self.config = config
        super().__init__({**engine_ports(config, self.COUNTERS, instr_layout("GEMM")), "wmem": Out(write_port(config))})

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        R, C = cfg.rows, cfg.cols
        L = cfg.addr_bits + 1
        latency = cfg.mem_latency

        m.submodules.setup = setup = GemmSetup(cfg, serial_products=True)
        m.submodules.array = array = BroadcastArray(R, C, cfg.acc_bits)
        m.submodules.requant = requant = RequantUnit(1, stages=cfg.requant_stages)
        f, low, end = setup.f, setup.low, setup.end
        m.d.comb += [setup.instr.eq(self.instr), setup.start.eq(self.start), self.ready.eq(setup.ready)]

        # ---- the sequencer: every read of the instruction ----------------------------------------
        req = self.mem.req
        a_ptr, a_base, b_ptr, p_ptr = (Signal(L, name=n) for n in ("a_ptr", "a_base", "b_ptr", "p_ptr"))
        ib, jb = Signal(L), Signal(L)                      # row block, column block of the tile
        left = Signal(L)                                   # reads left in LOAD_B / TILE_A
        p_slot = Signal(range(PARAM_WORDS))
        reserved = Signal()          # the row buffer holds, or will hold, a tile whose rows are not all taken
        tag = Signal(2)              # what the read accepted in this cycle is for
        accepted = req.valid & req.ready
        m.d.comb += req.payload.we.eq(0)
        release = Signal()
        # GAP cycles after a tile's last A read, so that the next tile's first k-step comes after its readout
        # (``rows`` cycles from the array's ``done``)
        GAP = R + 1
        gap = Signal(range(GAP))
        load_b = Signal()            # the sequencer enters LOAD_B

        def read(address, kind):
            m.d.comb += [req.valid.eq(1), req.payload.addr.eq(address), tag.eq(Mux(req.ready, kind, _NONE))]

        with m.FSM():
            with m.State("SETUP"):                      # the setup's checks
                with m.If(setup.checked):
                    with m.If(~setup.legal):            # no memory access; done with the error code
                        m.d.comb += [self.done.eq(1), self.error.eq(setup.fault), setup.release.eq(1)]
                    with m.Else():
                        m.d.sync += [a_ptr.eq(low.a), a_base.eq(low.a), b_ptr.eq(low.b), p_ptr.eq(low.p),
                                     ib.eq(0), jb.eq(0), left.eq(setup.b_bw)]
                        m.d.comb += load_b.eq(1)
                        m.next = "LOAD_B"
            with m.State("LOAD_B"):                     # the column block's B block into the buffer
                read(b_ptr, _B)
                with m.If(accepted):
                    m.d.sync += [b_ptr.eq(b_ptr + 1), left.eq(left - 1)]
                    with m.If(left == 1):
                        m.next = "B_LOADED"
            with m.State("B_LOADED"):                   # the last B word reaches the buffer before k-row 0 is read
                m.d.sync += left.eq(setup.a_bw - 1)
                m.next = "TILE_A"
            with m.State("TILE_A"):                     # the A block but for its last word
                with m.If(left != 0):
                    read(a_ptr, _A)
                    with m.If(accepted):
                        m.d.sync += [a_ptr.eq(a_ptr + 1), left.eq(left - 1)]
                with m.Elif(~reserved):                 # the row buffer and the parameter registers are free
                    m.d.sync += p_slot.eq(0)
                    m.next = "PARAMS"
            with m.State("PARAMS"):                     # the tile's parameters (its column block's)
                read(p_ptr + p_slot, _P)
                with m.If(accepted):
                    m.d.sync += p_slot.eq(p_slot + 1)
                    with m.If(p_slot == PARAM_WORDS - 1):
                        m.next = "LAST"
            with m.State("LAST"):                       # the tile's last A word
                read(a_ptr, _A)
                with m.If(accepted):
                    m.d.sync += [a_ptr.eq(a_ptr + 1), reserved.eq(1), left.eq(setup.a_bw - 1), gap.eq(GAP - 1)]
                    m.next = "GAP"
            with m.State("GAP"):                        # the readout takes the tile's sums before the next one
                m.d.sync += gap.eq(gap - 1)
                with m.If(gap == 0):
                    with m.If(ib != setup.mt_last):     # the next row block
                        m.d.sync += ib.eq(ib + 1)
                        m.next = "TILE_A"
                    with m.Else():
                        m.d.comb += load_b.eq(1)
                        m.d.sync += [ib.eq(0), p_ptr.eq(p_ptr + PARAM_WORDS), left.eq(setup.b_bw)]
                        with m.If(jb != setup.nt_last):             # the next column block: A from its base
                            m.d.sync += [jb.eq(jb + 1), a_ptr.eq(a_base)]
                            m.next = "LOAD_B"
                        with m.Else():                              # the next problem, or the end
                            m.d.sync += [jb.eq(0), a_base.eq(a_ptr)]
                            m.next = "LOAD_B"
                            with m.If(b_ptr == end.b):
                                m.next = "FINISH"
            with m.State("FINISH"):                     # until the last word is written
                with m.If(release):
                    m.d.comb += [self.done.eq(1), setup.release.eq(1)]
                    m.next = "SETUP"
        with m.If(~setup.ready):
            m.d.sync += self.counters.busy.eq(self.counters.busy + 1)

        # ---- responses: tags travel beside the reads (the memory answers exactly ``latency`` cycles later) ----
        tags = [tag]
        for stage in range(latency):
            tags.append(Signal(2, name=f"tag{stage + 1}"))
            m.d.sync += tags[-1].eq(tags[-2])
        word = self.mem.resp.payload
        b_lanes = cfg.mem_width // C                       # B k-rows per word
        m.submodules.b_buffer = b_buffer = block_ram(cfg.mem_bits, b_buffer_words(cfg))
        b_write = b_buffer.write_port()
        b_fill = Signal(range(b_buffer.depth + 1))
        with m.If(tags[-1] == _B):
            m.d.sync += b_fill.eq(b_fill + 1)
        m.d.comb += [b_write.addr.eq(b_fill), b_write.data.eq(word), b_write.en.eq(tags[-1] == _B)]

        # The k-row of an A word: counted a cycle before it arrives, when its B k-row is read from the buffer
        k, k_last = Signal(L), Signal(L)
        lane, first, last = Signal(range(b_lanes)), Signal(), Signal()
        m.d.sync += k_last.eq(setup.a_bw - 1)
        with m.If(tags[-2] == _A):
            m.d.sync += [lane.eq(k[:log2(b_lanes)]), first.eq(k == 0), last.eq(k == k_last),
                         k.eq(Mux(k == k_last, 0, k + 1))]
        with m.If(load_b):                         # a B block starts at the buffer's first word
            m.d.sync += b_fill.eq(0)
        with m.If(setup.checking):
            m.d.sync += k.eq(0)
        b_row = registered_read(m, b_buffer, k >> log2(b_lanes), "b_row")
        fire = tags[-1] == _A
        m.d.comb += [array.a.eq(word), array.b.eq(b_row.word_select(lane, 8 * C)),
                     array.ctrl.valid.eq(fire), array.ctrl.first.eq(first), array.ctrl.last.eq(last),
                     array.mode.a_signed.eq(f.a_signed), array.mode.b_signed.eq(f.b_signed)]
        with m.If(fire):
            m.d.sync += self.counters.feed.eq(self.counters.feed + 1)

        # Parameters: bias, multiplier (31 bits), shift (at most 62, clamped as it loads)
        bias, mult = Signal(data.ArrayLayout(32, C)), Signal(data.ArrayLayout(31, C))
        shift = Signal(data.ArrayLayout(6, C))
        p_fill = Signal(range(PARAM_WORDS))
        with m.If(tags[-1] == _P):
            m.d.sync += p_fill.eq(Mux(p_fill == PARAM_WORDS - 1, 0, p_fill + 1))
            with m.Switch(p_fill):
                with m.Case(0):
                    m.d.sync += bias.eq(word[:32 * C])
                with m.Case(1):
                    m.d.sync += [mult[j].eq(word[32 * j:32 * j + 31]) for j in range(C)]
                with m.Case(2):
                    for j in range(C):
                        value = word[32 * j:32 * j + 6]
                        m.d.sync += shift[j].eq(Mux(value > 62, 62, value))

        # ---- output stage: readout -> row buffer -> requant -> packed words -> write port ----------
        # The readout copies a finished tile's rows of true sums (:meth:`BroadcastArray.true_sum`), one per
        # cycle through a register, into a block RAM of ``rows`` entries, while the sequencer keeps the next
        # tile's first k-step back (GAP). The requant unit takes the rows from there; the buffer and the
        # parameter registers are free (``reserved`` low) once it took the last one.
        m.submodules.row_buffer = row_buffer = block_ram(data.ArrayLayout(signed(32), C), R)
        row_write = row_buffer.write_port()
        # The row it reads in this cycle: ``read_row``, one-hot in ``read_sel`` (an AND-OR is fewer LUTs than a
        # multiplexer); row 0 in the cycle of ``done``.
        reading, read_row, read_sel = Signal(), Signal(range(R)), Signal(R)
        copy_valid, copy_row = Signal(), Signal(range(R))
        copy = Signal(data.ArrayLayout(signed(32), C))
        active = array.done | reading
        sel = Mux(reading, read_sel, 1)

        def pick(values):
            return or_reduce([Mux(sel[i], Value.cast(v), 0) for i, v in enumerate(values)])
        m.d.sync += [copy[j].eq(array.true_sum(pick([array.result[i][j] for i in range(R)]), array.col_sum[j]))
                     for j in range(C)]
        m.d.sync += [copy_valid.eq(active), copy_row.eq(read_row)]
        m.d.comb += [row_write.addr.eq(copy_row), row_write.data.eq(copy), row_write.en.eq(copy_valid)]
        with m.If(active):
            m.d.sync += [read_row.eq(read_row + 1), read_sel.eq(sel << 1), reading.eq(1)]
            with m.If(read_row == R - 1):
                m.d.sync += [reading.eq(0), read_row.eq(0)]
        # The tile's elements go in order, element ``col`` of row ``row``, into the element register (``x``
        # plus its bias: the requant unit gets a bias of 0 and starts at a register; FPGA timing), and from
        # there to the requant unit (one lane). ``stored``: every row of the tile is in the buffer;
        # ``present``: the buffer's output holds row ``row``.
        stored, present, row, col = Signal(), Signal(), Signal(range(R)), Signal(range(C))
        element, e_valid, e_col, e_last = Signal(signed(32)), Signal(), Signal(range(C)), Signal()
        rq = requant.i
        taken = rq.valid & rq.ready
        load = present & (~e_valid | taken)
        row_done = load & (col == C - 1)
        with m.If(copy_valid & (copy_row == R - 1)):
            m.d.sync += stored.eq(1)
        m.d.sync += present.eq(stored & ~(row_done & (row == R - 1)))
        row_data = registered_read(m, row_buffer, Mux(row_done, row + 1, row), "row_data")
        with m.If(taken):
            m.d.sync += e_valid.eq(0)
            with m.If(e_last):                  # the parameters are free once the last element went in
                m.d.sync += reserved.eq(0)
        with m.If(load):
            m.d.sync += [element.eq(row_data[col] + bias[col]), e_valid.eq(1), e_col.eq(col), col.eq(col + 1),
                         e_last.eq(row_done & (row == R - 1))]
        with m.If(row_done):
            m.d.sync += [col.eq(0), row.eq(row + 1)]
            with m.If(row == R - 1):
                m.d.sync += [row.eq(0), stored.eq(0)]
        m.d.comb += [rq.valid.eq(e_valid), rq.payload.x[0].eq(element), rq.payload.bias[0].eq(0),
                     rq.payload.multiplier[0].eq(mult[e_col]), rq.payload.shift[0].eq(shift[e_col]),
                     requant.enable.eq(f.requant), requant.rounding.eq(f.rounding),
                     requant.zero_point.eq(f.zero_point), requant.out_format.eq(f.out_format), requant.relu.eq(f.relu)]

        # The packer: an element enters a word at the top and moves down by its bits, so when the word is
        # full, element n of it is at bits ``n * bits``: row-major, as the layout has it (a tile fills whole
        # words).
        out = requant.o
        packed = Signal(cfg.mem_bits)
        fill = Signal(range(cfg.mem_bits // 4))
        c_ptr, written = Signal(L), Signal(L)
        w_valid, w_addr = Signal(), Signal(cfg.addr_bits)          # the full word is ``packed``
        m.d.comb += [out.ready.eq(1), self.wmem.valid.eq(w_valid), self.wmem.payload.addr.eq(w_addr),
                     self.wmem.payload.wdata.eq(packed)]
        m.d.sync += w_valid.eq(0)
        with m.If(out.valid):
            with m.Switch(f.out_format):
                for code, bits in OUT_BITS.items():
                    with m.Case(code):
                        merged = Cat(packed[bits:], out.payload[0][:bits])
                        full = fill == cfg.mem_bits // bits - 1
                        m.d.sync += [packed.eq(merged), fill.eq(Mux(full, 0, fill + 1))]
                        with m.If(full):
                            m.d.sync += [w_valid.eq(1), w_addr.eq(c_ptr), c_ptr.eq(c_ptr + 1), written.eq(written + 1)]
        with m.If(setup.checking):
            m.d.sync += [c_ptr.eq(low.c), written.eq(0), fill.eq(0)]
        # done once the last word went to the write port (the memory writes it in the next cycle); the test is
        # a register, so ``done`` starts at one (FPGA timing)
        m.d.sync += release.eq((written == setup.out_total) & ~w_valid & ~reserved)
        return m
