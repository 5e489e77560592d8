"""Pipelined integer requantization unit: the output stage of the GEMM engine.

Bit-exact with :func:`tridsa.sw.requant.requantize_raw` (the module docstring of
:mod:`tridsa.sw.requant` is the specification). Field widths and encodings come from there.
"""
from __future__ import annotations

from amaranth import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..sw.requant import (ACC_BITS, INT32_MAX, INT32_MIN, MULTIPLIER_BITS, OUT_FORMATS, OUT_RANGES, ROUNDING,
                          SHIFT_BITS, ZERO_POINT_BITS)

__all__ = ["RequantUnit"]

_ROUNDING_BITS = max(ROUNDING.values()).bit_length()
_FORMAT_BITS = max(OUT_FORMATS.values()).bit_length()
_WIDE = 2 * ACC_BITS  # holds every product v*m (|v*m| < 2**62) and every shifted value


class RequantUnit(wiring.Component):
    """Requantize ``lanes`` int32 accumulators per cycle (see :mod:`tridsa.sw.requant`).

    Parameters
    ----------
    lanes:
        Values per row (an int in 1..256).

    Attributes
    ----------
    i: In(stream)
        Rows of ``{"x", "bias"}`` (int32 per lane) and per-lane ``"multiplier"`` (31 bits) and
        ``"shift"`` (6 bits, at most 62; larger values give unspecified results).
    enable, rounding, zero_point, out_format, relu: In
        Command constants (codes of ``ROUNDING``/``OUT_FORMATS``). They must stay stable from the first
        row of a command until its last result has left ``o``. With ``enable`` low the unit passes
        ``wrap_int32(x + bias)`` through the same clamp (zero point taken as 0).
    o: Out(stream)
        Results, one row per input row in order, as int32 numbers of the output format.
    latency: int
        Cycles from an accepted input row to its result on ``o`` when ``o`` never stalls.

    The pipeline has ``latency`` register stages: (1) bias add and TFLite's left shift, (2) the
    32x31 multiply, (3) TFLite's doubling high multiply, (4) the rounding right shift and the
    round-up decision, (5) increment, saturation, zero point and clamp. A stage takes a new row when
    it is empty or the stage after it moves on (``o.ready`` reaches ``i.ready`` through one OR gate
    per stage, bubbles are squeezed out). ``o.valid`` does not depend on ``o.ready``.
    """

    latency = 5

    @staticmethod
    def input_layout(lanes: int) -> data.StructLayout:
        """Payload layout of ``i`` for ``lanes`` lanes."""
        return data.StructLayout({
            "x": data.ArrayLayout(signed(ACC_BITS), lanes),
            "bias": data.ArrayLayout(signed(ACC_BITS), lanes),
            "multiplier": data.ArrayLayout(unsigned(MULTIPLIER_BITS), lanes),
            "shift": data.ArrayLayout(unsigned(SHIFT_BITS), lanes),
        })

    @staticmethod
    def output_layout(lanes: int) -> data.ArrayLayout:
        """Payload layout of ``o`` for ``lanes`` lanes."""
        return data.ArrayLayout(signed(ACC_BITS), lanes)

    def __init__(self, lanes: int):
        if not isinstance(lanes, int) or isinstance(lanes, bool):
            raise TypeError(f"lanes must be an int (got {type(lanes).__name__})")
        if not 1 <= lanes <= 256:
            raise ValueError(f"lanes={lanes} is invalid: must be in 1..256")
        self.lanes = lanes
        super().__init__({
            "i": In(stream.Signature(self.input_layout(lanes))),
            "enable": In(1),
            "rounding": In(_ROUNDING_BITS),
            "zero_point": In(signed(ZERO_POINT_BITS)),
            "out_format": In(_FORMAT_BITS),
            "relu": In(1),
            "o": Out(stream.Signature(self.output_layout(lanes))),
        })

    def elaborate(self, platform):
        m = Module()
        lanes = self.lanes

        # Command-constant decode (combinational; inputs are stable during a command).
        tflite = Signal()
        even = Signal()
        zp = Signal(signed(ZERO_POINT_BITS))
        lo = Signal(signed(ACC_BITS + 1))
        hi = Signal(signed(ACC_BITS + 1))
        m.d.comb += [
            tflite.eq(self.enable & (self.rounding == ROUNDING["tflite"])),
            even.eq(self.enable & (self.rounding == ROUNDING["half_even"])),
            zp.eq(Mux(self.enable, self.zero_point, 0)),
        ]
        fmt_lo = Signal(signed(ACC_BITS + 1))
        with m.Switch(self.out_format):
            for name, code in OUT_FORMATS.items():
                with m.Case(code):
                    m.d.comb += [fmt_lo.eq(OUT_RANGES[name][0]), hi.eq(OUT_RANGES[name][1])]
        m.d.comb += lo.eq(Mux(self.relu & (zp > fmt_lo), zp, fmt_lo))

        # Handshake: stage k loads when it is empty or stage k+1 loads (advance[k]).
        stages = self.latency
        valid = [Signal(name=f"valid{k + 1}") for k in range(stages)]
        advance = [Signal(name=f"advance{k + 1}") for k in range(stages)]
        for k in range(stages):
            downstream = self.o.ready if k == stages - 1 else advance[k + 1]
            m.d.comb += advance[k].eq(~valid[k] | downstream)
        upstream_valid = [self.i.valid] + valid[:-1]
        for k in range(stages):
            with m.If(advance[k]):
                m.d.sync += valid[k].eq(upstream_valid[k])
        m.d.comb += [self.i.ready.eq(advance[0]), self.o.valid.eq(valid[-1])]

        payload = self.i.payload
        for lane in range(lanes):
            x, bias = payload.x[lane], payload.bias[lane]
            mult, shift = payload.multiplier[lane], payload.shift[lane]

            # Stage 1: v = wrap32(x + bias); TFLite pre-shift; effective multiplier and right shift.
            v = Signal(signed(ACC_BITS), name=f"v_{lane}")
            left = Signal(range(32), name=f"left_{lane}")
            m.d.comb += [
                v.eq(x + bias),
                left.eq(Mux(tflite & (shift < 31), 31 - shift, 0)),
            ]
            a1 = Signal(signed(ACC_BITS), name=f"a1_{lane}")
            m1 = Signal(unsigned(MULTIPLIER_BITS), name=f"m1_{lane}")
            e1 = Signal(unsigned(SHIFT_BITS), name=f"e1_{lane}")
            with m.If(advance[0]):
                m.d.sync += [
                    a1.eq((v << left)[:ACC_BITS]),
                    m1.eq(Mux(self.enable, mult, 1)),
                    e1.eq(Mux(~self.enable, 0, Mux(tflite, Mux(shift > 31, shift - 31, 0), shift))),
                ]

            # Stage 2: product (|p| < 2**62).
            p2 = Signal(signed(_WIDE), name=f"p2_{lane}")
            e2 = Signal(unsigned(SHIFT_BITS), name=f"e2_{lane}")
            with m.If(advance[1]):
                m.d.sync += [p2.eq(a1 * m1), e2.eq(e1)]

            # Stage 3: TFLite SaturatingRoundingDoublingHighMul (a * m never overflows: m < 2**31).
            q = Signal(signed(_WIDE), name=f"q_{lane}")
            high = Signal(signed(_WIDE), name=f"high_{lane}")
            m.d.comb += [
                q.eq(p2 + Mux(p2 >= 0, 1 << 30, 1 - (1 << 30))),
                # truncating division by 2**31: floor, plus one for a negative inexact quotient
                high.eq((q >> 31) + (q[_WIDE - 1] & (q[:31] != 0))),
            ]
            p3 = Signal(signed(_WIDE), name=f"p3_{lane}")
            e3 = Signal(unsigned(SHIFT_BITS), name=f"e3_{lane}")
            with m.If(advance[2]):
                m.d.sync += [p3.eq(Mux(tflite, high, p2)), e3.eq(e2)]

            # Stage 4: floor(p3 / 2**e3) and the round-up decision remainder > threshold where
            # threshold = (mask >> 1) + t, t = (p3 < 0) for TFLite, 1 for a half-even tie that would
            # leave floor + zp even, else 0 (half up). e3 = 0 never rounds (remainder = 0).
            mask = Signal(unsigned(_WIDE), name=f"mask_{lane}")
            floor = Signal(signed(_WIDE), name=f"floor_{lane}")
            t = Signal(name=f"t_{lane}")
            m.d.comb += [
                mask.eq((Const(1, unsigned(_WIDE)) << e3) - 1),
                floor.eq(p3 >> e3),
                t.eq(Mux(tflite, p3[_WIDE - 1], even & ~(floor[0] ^ zp[0]))),
            ]
            f4 = Signal(signed(_WIDE), name=f"f4_{lane}")
            up4 = Signal(name=f"up4_{lane}")
            with m.If(advance[3]):
                m.d.sync += [
                    f4.eq(floor),
                    up4.eq((p3.as_unsigned() & mask) > ((mask >> 1) + t)),
                ]

            # Stage 5: r = sat32(floor + up); clamp(sat32(r + zp)) = clamp(r + zp) because lo, hi fit int32.
            r = Signal(signed(_WIDE + 1), name=f"r_{lane}")
            r_sat = Signal(signed(ACC_BITS), name=f"rsat_{lane}")
            y = Signal(signed(ACC_BITS + 1), name=f"y_{lane}")
            y_lo = Signal(signed(ACC_BITS + 1), name=f"ylo_{lane}")
            out = Signal(signed(ACC_BITS), name=f"out_{lane}")
            m.d.comb += [
                r.eq(f4 + up4),
                r_sat.eq(Mux(r > INT32_MAX, INT32_MAX, Mux(r < INT32_MIN, INT32_MIN, r))),
                y.eq(r_sat + zp),
                y_lo.eq(Mux(y < lo, lo, y)),  # min(max(y, lo), hi), also when relu puts lo above hi
                out.eq(Mux(y_lo > hi, hi, y_lo)),
            ]
            with m.If(advance[4]):
                m.d.sync += self.o.payload[lane].eq(out)

        return m
