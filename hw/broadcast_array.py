"""Broadcast MAC array of the compact GEMM engine: every PE sees its k-step in the same cycle.

Row ``i`` of PEs shares the A byte ``a[i]`` and column ``j`` the B byte ``b[j]`` (no skew, no pass-through
registers). Two PEs of a row, columns 2c and 2c + 1, share one :class:`~tridsa.hw.dsp.Mac16Dual8x8`
(iCE40 ``SB_MAC16`` in dual 8 x 8 mode with its input and product registers on; a behavioural model of
the same registers where the platform has none): ``A = a[i]`` on both halves, ``B = {b[2c], b[2c+1]}``.

*Signedness.* The ``SB_MAC16``'s signedness is fixed at synthesis (signed) and the GEMM chooses it per
instruction. B is signed on this array (``Config.unsigned_b``: an unsigned B is BAD_MODE). Instead of a
correction in every PE (the systolic array's iCE40 PE), the array multiplies the signed byte
``a' = a - 128 ua`` (``ua``: A is unsigned; the byte's top bit inverted) and keeps a sum per column: with
``a = a' + 128 ua`` (the true value),

    a * b = a' * b + 128 * ua * b,

so the true sum of PE (i, j) over a tile is ``result[i][j] + 128 * col_sum[j]``, where ``col_sum[j]`` sums
``ua * b`` of column j (:meth:`true_sum`): two sums instead of sixteen corrections; the identity holds for
every byte, zero padding included. (An unsigned B would need a sum per row as well, ``128 * ub * a'``.)

Protocol: each cycle the engine may present a k-step ``a``, ``b`` with ``ctrl = {valid, first, last}``
and ``mode`` (stable during an instruction; ``mode.b_signed`` set). ``result`` and ``col_sum`` are the sums
themselves (no copies: a register per bit is a logic cell on the iCE40). After a ``last`` k-step they are
the tile's from ``LATENCY`` cycles after that k-step was presented (when ``done`` pulses) until the
cycle the next tile's first k-step is presented, inclusive (the engine reads them out in between).
The PE sums are ``acc_bits`` wide (``Config.acc_bits``: exact for every
legal GEMM of the chip's memory, as ``|a' * b| <= 2**14``), the column sums ``acc_bits - 7`` (``|ua * b|``
is at most 128, a 2**7-th of the product bound ``255**2``).
"""
from amaranth import *
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .dsp import LATENCY as DSP_LATENCY, Mac16Dual8x8
from .mac_array import CTRL, MODE, delay

__all__ = ["BroadcastArray"]


class BroadcastArray(wiring.Component):
    """``rows x cols`` PEs (``cols`` even), all fed the same k-step in the same cycle; see the module docstring.

    ``primitives``: instantiate ``SB_MAC16`` (True), use its behavioural model (False), or instantiate it
    when elaborated for an iCE40 platform (``"auto"``).
    """

    LATENCY = DSP_LATENCY + 1                   # a k-step presented in cycle t is in ``result`` in t + 3

    def __init__(self, rows, cols, acc_bits=32, primitives="auto"):
        if rows < 1 or cols < 2 or cols % 2:
            raise ValueError(f"BroadcastArray needs rows >= 1 and an even cols >= 2, got {rows}x{cols}")
        if not 18 <= acc_bits <= 32:
            raise ValueError(f"acc_bits must be in 18..32, not {acc_bits!r}")
        self.rows, self.cols, self.acc_bits, self.primitives = rows, cols, acc_bits, primitives
        self.sum_bits = acc_bits - 7
        super().__init__({
            "a": In(data.ArrayLayout(8, rows)),
            "b": In(data.ArrayLayout(8, cols)),
            "ctrl": In(CTRL),
            "mode": In(MODE),
            "done": Out(1),
            "result": Out(data.ArrayLayout(data.ArrayLayout(signed(acc_bits), cols), rows)),
            "col_sum": Out(data.ArrayLayout(signed(self.sum_bits), cols)),
        })

    @staticmethod
    def true_sum(result, col_sum):
        """The tile's sum of one PE (a signed Value of at most 32 bits) from its ``result`` and its column's sum
        (each read as signed: an element picked by a Value index is a plain slice)."""
        result, col_sum = (Value.cast(v).as_signed() for v in (result, col_sum))
        return result + (col_sum << 7)

    def elaborate(self, platform):
        m = Module()
        R, C = self.rows, self.cols
        ua = ~self.mode.a_signed
        a_dsp = [Cat(self.a[i][:7], self.a[i][7] ^ ua).as_signed() for i in range(R)]      # a'
        # Stage 0: the column terms (registered), the control; the DSPs register their operands
        col_terms = [delay(m, Mux(ua, self.b[j].as_signed(), 0), 1, f"col_term{j}_") for j in range(C)]
        ctrl0 = delay(m, self.ctrl, 1, "ctrl_0_")
        ctrl1 = delay(m, ctrl0, 1, "ctrl_1_")
        m.d.comb += self.done.eq(delay(m, ctrl1.valid & ctrl1.last, 1, "done_"))

        def accumulate(term, ahead, now, out):
            """``out`` sums ``term`` over a tile: it is cleared (a synchronous reset) while a tile's first k-step
            is one stage ahead (``ahead``; the column sums: as it is presented); ``now`` is the control of the
            stage that adds."""
            with m.If(ahead.valid & ahead.first):
                m.d.sync += out.eq(0)
            with m.Elif(now.valid):
                m.d.sync += out.eq(out + term)

        # The column sums add in stage 0, the PE sums in stage 2 (after the DSP's two registers)
        for j in range(C):
            accumulate(col_terms[j], self.ctrl, ctrl0, self.col_sum[j])
        for i in range(R):
            for c in range(C // 2):
                m.submodules[f"dsp_{i}_{c}"] = dsp = Mac16Dual8x8(self.primitives)
                m.d.comb += [dsp.a_top.eq(a_dsp[i]), dsp.a_bot.eq(a_dsp[i]),
                             dsp.b_top.eq(self.b[2 * c]), dsp.b_bot.eq(self.b[2 * c + 1])]
                for j, product in ((2 * c, dsp.top), (2 * c + 1, dsp.bot)):
                    accumulate(product, ctrl0, ctrl1, self.result[i][j])
        return m
