"""Broadcast MAC array of the compact GEMM engine: every PE sees its k-step in the same cycle.

Row ``i`` of PEs shares the A byte ``a[i]`` and column ``j`` the B byte ``b[j]`` (no skew, no pass-through
registers): PE (i, j) accumulates ``a[i] * b[j]``. Two PEs of a row, columns 2c and 2c + 1, share one
:class:`~tridsa.hw.dsp.Mac16Dual8x8` (iCE40 ``SB_MAC16`` in dual 8 x 8 mode with its input and product
registers on; a behavioural model of the same two registers where the platform has none): ``A = a[i]`` on
both halves, ``B = {b[2c], b[2c+1]}``. The DSP multiplies the bytes as signed; each PE adds
:func:`~tridsa.hw.mac_array.mac8_correction` (registered beside the product register) for unsigned
operands, as the systolic array's iCE40 PE does.

Protocol: each cycle the engine may present a k-step ``a``, ``b`` with ``ctrl = {valid, first, last}``
and ``mode`` (stable during an instruction). Stages: (0) the DSP input registers and the fabric copies
of the operands, (1) the DSP product register and the correction, (2) the accumulator. On a ``last``
k-step every PE latches its sum into ``result`` (``LATENCY`` cycles after the k-step was presented,
when ``done`` pulses); ``result`` holds until the next ``last``. A ``first`` k-step restarts the sums,
so tiles run back to back. The accumulators are ``acc_bits`` wide (``Config.acc_bits``, exact for every
legal GEMM of the chip's memory); ``result`` holds them sign-extended by the reader.
"""
from amaranth import *
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .dsp import LATENCY as DSP_LATENCY, Mac16Dual8x8
from .mac_array import CTRL, MODE, delay, mac8_correction

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
        super().__init__({
            "a": In(data.ArrayLayout(8, rows)),
            "b": In(data.ArrayLayout(8, cols)),
            "ctrl": In(CTRL),
            "mode": In(MODE),
            "done": Out(1),
            "result": Out(data.ArrayLayout(data.ArrayLayout(signed(acc_bits), cols), rows)),
        })

    def elaborate(self, platform):
        m = Module()
        R, C = self.rows, self.cols
        # Stage 0: the fabric's copies of the operands, control and mode (the DSPs register their own)
        a0 = [delay(m, self.a[i], 1, f"a{i}_") for i in range(R)]
        b0 = [delay(m, self.b[j], 1, f"b{j}_") for j in range(C)]
        ctrl0 = delay(m, self.ctrl, 1, "ctrl_0_")
        mode0 = delay(m, self.mode, 1, "mode_0_")
        ctrl1 = delay(m, ctrl0, 1, "ctrl_1_")
        done = delay(m, ctrl1.valid & ctrl1.last, 1, "done_")
        m.d.comb += self.done.eq(done)
        for i in range(R):
            for c in range(C // 2):
                m.submodules[f"dsp_{i}_{c}"] = dsp = Mac16Dual8x8(self.primitives)
                m.d.comb += [dsp.a_top.eq(self.a[i]), dsp.a_bot.eq(self.a[i]),
                             dsp.b_top.eq(self.b[2 * c]), dsp.b_bot.eq(self.b[2 * c + 1])]
                for j, product in ((2 * c, dsp.top), (2 * c + 1, dsp.bot)):
                    # Stage 1: the correction beside the product register; stage 2: the accumulator. It is
                    # cleared (a synchronous reset) while a tile's first k-step is in stage 1, when the
                    # previous tile's last one, if any, goes to ``result``.
                    correction = delay(m, mac8_correction(a0[i], b0[j], mode0), 1, f"correction_{i}_{j}_")
                    acc = Signal(signed(self.acc_bits), name=f"acc_{i}_{j}")
                    total = Signal(signed(self.acc_bits), name=f"total_{i}_{j}")
                    m.d.comb += total.eq(acc + product + (correction << 8))
                    with m.If(ctrl0.valid & ctrl0.first):
                        m.d.sync += acc.eq(0)
                    with m.Elif(ctrl1.valid):
                        m.d.sync += acc.eq(total)
                    with m.If(ctrl1.valid & ctrl1.last):
                        m.d.sync += self.result[i][j].eq(total)
        return m
