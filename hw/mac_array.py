"""Output-stationary systolic MAC array.

Why output-stationary (OS) and not weight-stationary (WS): in OS every PE keeps its int32 accumulator
for the whole K reduction, so any K streams through without an accumulator SRAM or partial-sum
read-modify-write, and both operands arrive as plain k-rows that the driver lays out once. WS needs the
weight tile preloaded (R cycles per tile unless double-buffered) and partial sums for K > R written
back to an accumulator memory. With OS, back-to-back tiles cost nothing: the ``first`` flag restarts
the accumulator in the same cycle the previous tile's ``last`` product lands in ``result``.

Protocol: each cycle the feeder may present one k-step: ``a`` (one byte per row), ``b`` (one byte per
column) and ``ctrl = {valid, first, last}``. Row ``i`` is skewed by ``i`` cycles and column ``j`` by
``j``, so PE (i, j) sees the k-step at cycle ``t + i + j``. On ``last`` a PE latches its sum into
``result``; ``out_valid`` pulses once per array row when that row's results (``out_row``) are
complete (rows leave in order, at most one per cycle; the array cannot be stalled). Invariant the feeder must keep: two ``last`` k-steps are at least
``MacArray.min_tile_cycles`` cycles apart, so a result is read before it is overwritten.
"""
from amaranth import *
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["CTRL", "MODE", "ProcessingElement", "MacArray"]

CTRL = data.StructLayout({"valid": 1, "first": 1, "last": 1})
MODE = data.StructLayout({"int4": 1, "a_signed": 1, "b_signed": 1})


class ProcessingElement(wiring.Component):
    """One PE: an int8 x int8 MAC, or two int4 x int4 MACs on packed operands, into an int32 accumulator.

    INT4 operands hold element k in the low nibble and k+1 in the high nibble of the byte.
    Operands and control are registered on to the right (a, ctrl) and down (b) neighbours.
    """
    a_in: In(8)
    b_in: In(8)
    ctrl_in: In(CTRL)
    mode: In(MODE)
    a_out: Out(8)
    b_out: Out(8)
    ctrl_out: Out(CTRL)
    result: Out(signed(32))

    def elaborate(self, platform):
        m = Module()
        a, b, mode = self.a_in, self.b_in, self.mode

        def extend(value, top, signed):
            return Cat(value, value[top] & signed).as_signed()

        prod8 = Signal(signed(18))
        prod4 = Signal(signed(11))
        m.d.comb += [
            prod8.eq(extend(a, 7, mode.a_signed) * extend(b, 7, mode.b_signed)),
            prod4.eq(extend(a[0:4], 3, mode.a_signed) * extend(b[0:4], 3, mode.b_signed)
                     + extend(a[4:8], 3, mode.a_signed) * extend(b[4:8], 3, mode.b_signed)),
        ]
        acc = Signal(signed(32))
        total = Signal(signed(32))
        m.d.comb += total.eq(Mux(self.ctrl_in.first, 0, acc) + Mux(mode.int4, prod4, prod8))
        with m.If(self.ctrl_in.valid):
            m.d.sync += acc.eq(total)
            with m.If(self.ctrl_in.last):
                m.d.sync += self.result.eq(total)
        m.d.sync += [self.a_out.eq(a), self.b_out.eq(b), self.ctrl_out.eq(self.ctrl_in)]
        return m


class MacArray(wiring.Component):
    """``rows x cols`` grid of :class:`ProcessingElement` with input skew and row readout."""

    def __init__(self, rows, cols):
        if rows < 1 or cols < 1:
            raise ValueError(f"MacArray needs rows, cols >= 1, got {rows}x{cols}")
        self.rows, self.cols = rows, cols
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

        pes = [[ProcessingElement() for _ in range(C)] for _ in range(R)]
        for i in range(R):
            for j in range(C):
                pe = pes[i][j]
                m.submodules[f"pe_{i}_{j}"] = pe
                m.d.comb += pe.mode.eq(self.mode)
                if j == 0:
                    m.d.comb += [pe.a_in.eq(delay(self.a[i], i, f"a{i}")),
                                 pe.ctrl_in.eq(delay(self.ctrl, i, f"ctrl{i}"))]
                else:
                    m.d.comb += [pe.a_in.eq(pes[i][j - 1].a_out), pe.ctrl_in.eq(pes[i][j - 1].ctrl_out)]
                if i == 0:
                    m.d.comb += pe.b_in.eq(delay(self.b[j], j, f"b{j}"))
                else:
                    m.d.comb += pe.b_in.eq(pes[i - 1][j].b_out)
        # Row i is complete when its last PE has latched: at most one row completes per cycle.
        done = [pes[i][C - 1].ctrl_out.valid & pes[i][C - 1].ctrl_out.last for i in range(R)]
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
