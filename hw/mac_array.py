"""Output-stationary systolic MAC array.

Why output-stationary (OS) and not weight-stationary (WS): in OS every PE keeps its int32 accumulator
for the whole K reduction, so any K streams through without an accumulator SRAM or partial-sum
read-modify-write, and both operands arrive as plain k-rows that the driver lays out once. WS needs the
weight tile preloaded (R cycles per tile unless double-buffered) and partial sums for K > R written
back to an accumulator memory. With OS, back-to-back tiles cost nothing: the ``first`` flag restarts
the accumulator in the same cycle the previous tile's ``last`` product lands in ``result``.

Protocol: each cycle the feeder may present one k-step: ``a`` (one byte per row), ``b`` (one byte per
column) and ``ctrl = {valid, first, last}``. The inputs are registered (``FEED_STAGES``, so the feeder's
multiplexers end at a register), then row ``i`` is skewed by ``i`` cycles and column ``j`` by ``j``, so
PE (i, j) sees the k-step at cycle ``t + 1 + i + j``. On ``last`` a PE latches its sum into
``result``; ``out_valid`` pulses once per array row when that row's results (``out_row``) are
complete (rows leave in order, at most one per cycle; the array cannot be stalled). Invariant the feeder must keep: two ``last`` k-steps are at least
``MacArray.min_tile_cycles`` cycles apart, so a result is read before it is overwritten.
"""
from amaranth import *
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..sw.gemm_layout import FEED_STAGES, PE_LATENCY      # the driver's cycle model uses the same depths

assert PE_LATENCY == 4, "ProcessingElement is written for four stages"

__all__ = ["CTRL", "MODE", "ProcessingElement", "MacArray"]

CTRL = data.StructLayout({"valid": 1, "first": 1, "last": 1})
MODE = data.StructLayout({"int4": 1, "a_signed": 1, "b_signed": 1})


def lut_multiply(x, y, terms=1):
    """``x * y`` (both signed) as a balanced tree of shifted partial products, with no ``*`` operator, so
    synthesis keeps it in LUT logic instead of mapping it to a hard multiplier. Returns the tree's top
    ``terms`` partial sums (their sum is the product), so a caller can register them halfway.

    A partial sum is kept as ``(value, shift)``: adding two only adds the bits above the lower shift,
    so no adder spends LUTs on known-zero low bits or on sign extension.
    """
    width = len(x) + len(y)
    sums = [(Mux(y[i], x.as_signed(), 0), i) for i in range(len(y) - 1)]
    sums.append((Mux(y[-1], -x.as_signed(), 0), len(y) - 1))

    def add(low, high):
        (v1, s1), (v2, s2) = low, high
        return Cat(v1[:s2 - s1], (v1 >> (s2 - s1)) + v2).as_signed(), s1

    while len(sums) > terms:
        sums = [add(sums[i], sums[i + 1]) if i + 1 < len(sums) else sums[i] for i in range(0, len(sums), 2)]
    return [(v << shift)[:width].as_signed() for v, shift in sums]


# The INT4 dot product on one multiplier: with A = a_lo + a_hi * 2**S and B = b_hi + b_lo * 2**S,
# A * B = a_lo*b_hi + (a_lo*b_lo + a_hi*b_hi) * 2**S + a_hi*b_lo * 2**(2S). |a_lo*b_hi| <= 225 < 2**S and the
# dot product lies in [-240, 450] (10 bits signed), so it is bits [S, S+10) of A * B plus 1 when a_lo*b_hi < 0.
_S = 10


class ProcessingElement(wiring.Component):
    """One PE: an int8 x int8 MAC, or (``int4``) two int4 x int4 MACs on packed operands, into an int32
    accumulator.

    INT4 operands hold element k in the low nibble and k+1 in the high nibble of the byte.
    Operands, control and mode are registered on to the right (a, ctrl, mode) and down (b) neighbours (so
    the mode reaches each PE from a neighbour's register, not over one net to every PE). Four stages, so
    that the operand packing, a hard multiplier, a LUT multiplier's adder tree and the 32-bit accumulate
    each get a cycle: (0) operands (hard: sign-extended or INT4-packed; LUT: as received), (1) multiply
    (hard: the multiplier's output; LUT: the tree's top partial sums), (2) the int8 product or the int4
    dot product, (3) accumulate; ``result`` is latched ``latency`` cycles after the ``last``
    k-step came in.

    Parameters
    ----------
    hard:
        True: one ``*`` (an 18 x 18 signed multiply, the INT4 pair packed into it as above), which synthesis
        maps to a hard DSP. False: LUT partial products (:func:`lut_multiply`).
    int4:
        Build the INT4 mode (else ``mode.int4`` must stay 0).
    """
    a_in: In(8)
    b_in: In(8)
    ctrl_in: In(CTRL)
    mode: In(MODE)
    a_out: Out(8)
    mode_out: Out(MODE)
    b_out: Out(8)
    ctrl_out: Out(CTRL)
    result: Out(signed(32))

    latency = PE_LATENCY

    def __init__(self, hard=True, int4=True):
        self.hard, self.int4 = hard, int4
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        a_in, b_in, mode_in = self.a_in, self.b_in, self.mode

        def extend(value, top, signed):
            return Cat(value, value[top] & signed).as_signed()

        product = Signal(signed(18))                # stage 2: int8 product or int4 dot product
        if self.hard:
            wide = Signal(signed(36))               # stage 1
            a8, b8 = extend(a_in, 7, mode_in.a_signed), extend(b_in, 7, mode_in.b_signed)
            if self.int4:
                # stage 0: the packed operands, 16 bits (|a_hi * 2**S + a_lo| < 2**15), so one 18 x 18
                # multiplier holds the product; the packing adders stay out of the multiplier's cycle
                a_lo, a_hi = extend(a_in[0:4], 3, mode_in.a_signed), extend(a_in[4:8], 3, mode_in.a_signed)
                b_lo, b_hi = extend(b_in[0:4], 3, mode_in.b_signed), extend(b_in[4:8], 3, mode_in.b_signed)
                packed_a, packed_b = Signal(signed(16)), Signal(signed(16))
                int4, int4_1 = Signal(), Signal()
                low_negative, low_negative_1 = Signal(), Signal()
                m.d.sync += [packed_a.eq(Mux(mode_in.int4, a_lo + (a_hi << _S), a8)),
                             packed_b.eq(Mux(mode_in.int4, b_hi + (b_lo << _S), b8)),
                             int4.eq(mode_in.int4), low_negative.eq((a_lo != 0) & (b_hi != 0) & (a_lo[4] ^ b_hi[4]))]
                m.d.sync += [wide.eq(packed_a * packed_b), int4_1.eq(int4), low_negative_1.eq(low_negative)]
                dot = (wide[_S:_S + 10] + low_negative_1)[:10].as_signed()
                m.d.sync += product.eq(Mux(int4_1, dot, wide[:18].as_signed()))
            else:
                a0, b0 = Signal(signed(9)), Signal(signed(9))     # stage 0
                m.d.sync += [a0.eq(a8), b0.eq(b8), wide.eq(a0 * b0), product.eq(wide[:18].as_signed())]
        else:
            a, b, mode = Signal(8), Signal(8), Signal(MODE)      # stage 0: the operands as received
            m.d.sync += [a.eq(a_in), b.eq(b_in), mode.eq(mode_in)]
            a8, b8 = extend(a, 7, mode.a_signed), extend(b, 7, mode.b_signed)
            halves = [Signal(signed(18), name=f"half{i}") for i in range(2)]      # stage 1
            if self.int4:
                a_lo, a_hi = extend(a[0:4], 3, mode.a_signed), extend(a[4:8], 3, mode.a_signed)
                b_lo, b_hi = extend(b[0:4], 3, mode.b_signed), extend(b[4:8], 3, mode.b_signed)
                int8_halves = lut_multiply(a8, b8, terms=2)
                m.d.sync += [halves[0].eq(Mux(mode.int4, lut_multiply(a_lo, b_lo)[0], int8_halves[0])),
                             halves[1].eq(Mux(mode.int4, lut_multiply(a_hi, b_hi)[0], int8_halves[1]))]
            else:
                m.d.sync += [h.eq(v) for h, v in zip(halves, lut_multiply(a8, b8, terms=2))]
            m.d.sync += product.eq(halves[0] + halves[1])

        ctrl = self.ctrl_in                          # the k-step's control, delayed to stage 3
        for stage in range(self.latency - 1):
            ctrl_next = Signal(CTRL, name=f"ctrl{stage}")
            m.d.sync += ctrl_next.eq(ctrl)
            ctrl = ctrl_next
        acc = Signal(signed(32))
        total = Signal(signed(32))
        m.d.comb += total.eq(Mux(ctrl.first, 0, acc) + product)
        with m.If(ctrl.valid):
            m.d.sync += acc.eq(total)
            with m.If(ctrl.last):
                m.d.sync += self.result.eq(total)

        m.d.sync += [self.a_out.eq(a_in), self.b_out.eq(b_in), self.ctrl_out.eq(self.ctrl_in),
                     self.mode_out.eq(mode_in)]
        return m


class MacArray(wiring.Component):
    """``rows x cols`` grid of :class:`ProcessingElement` with input skew and row readout.

    ``hard_multipliers``: how many PEs (row-major) use a hard-multiplier PE, the rest LUT PEs (None: all
    hard); ``int4``: build the INT4 mode. Neither changes results or timing, only what synthesis makes.
    """

    def __init__(self, rows, cols, hard_multipliers=None, int4=True):
        if rows < 1 or cols < 1:
            raise ValueError(f"MacArray needs rows, cols >= 1, got {rows}x{cols}")
        self.rows, self.cols = rows, cols
        self.hard_multipliers = rows * cols if hard_multipliers is None else hard_multipliers
        self.int4 = int4
        self.min_tile_cycles = max(rows, cols) + 1
        super().__init__({
            "a": In(data.ArrayLayout(8, rows)),
            "b": In(data.ArrayLayout(8, cols)),
            "ctrl": In(CTRL),
            "mode": In(MODE),
            "out_valid": Out(1),
            "out_row": Out(data.ArrayLayout(signed(32), cols)),
        })

    def elaborate(self, platform):
        m = Module()
        R, C = self.rows, self.cols

        def delay(value, cycles, name):
            for stage in range(cycles):
                reg = Signal.like(value, name=f"{name}_d{stage}")
                m.d.sync += reg.eq(value)
                value = reg
            return value

        pes = [[ProcessingElement(hard=i * C + j < self.hard_multipliers, int4=self.int4) for j in range(C)]
               for i in range(R)]
        for i in range(R):
            for j in range(C):
                pe = pes[i][j]
                m.submodules[f"pe_{i}_{j}"] = pe
                if j == 0:
                    m.d.comb += [pe.a_in.eq(delay(self.a[i], FEED_STAGES + i, f"a{i}")),
                                 pe.ctrl_in.eq(delay(self.ctrl, FEED_STAGES + i, f"ctrl{i}")),
                                 pe.mode.eq(delay(self.mode, FEED_STAGES + i, f"mode{i}"))]
                else:
                    m.d.comb += [pe.a_in.eq(pes[i][j - 1].a_out), pe.ctrl_in.eq(pes[i][j - 1].ctrl_out),
                                 pe.mode.eq(pes[i][j - 1].mode_out)]
                if i == 0:
                    m.d.comb += pe.b_in.eq(delay(self.b[j], FEED_STAGES + j, f"b{j}"))
                else:
                    m.d.comb += pe.b_in.eq(pes[i - 1][j].b_out)
        # Row i is complete when its last PE has latched (``latency - 1`` cycles after that PE passed the
        # ``last`` k-step on): at most one row completes per cycle.
        done = [delay(pes[i][C - 1].ctrl_out.valid & pes[i][C - 1].ctrl_out.last, ProcessingElement.latency - 1,
                      f"done{i}") for i in range(R)]
        row = Signal(data.ArrayLayout(signed(32), C))
        for j in range(C):
            m.d.comb += row[j].eq(_or_reduce([Mux(done[i], pes[i][j].result, 0) for i in range(R)]))
        m.d.sync += [self.out_valid.eq(Cat(done).any()), self.out_row.eq(row)]
        return m


def _or_reduce(values):
    result = values[0]
    for v in values[1:]:
        result = result | v
    return result
