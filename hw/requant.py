"""Pipelined integer requantization unit: the output stage of the GEMM engine.

Bit-exact with :func:`tridsa.sw.requant.requantize_raw` (the module docstring of
:mod:`tridsa.sw.requant` is the specification). Field widths and encodings come from there.
"""
from __future__ import annotations

from collections import namedtuple
from types import SimpleNamespace

from amaranth import Cat, Const, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..spec.config import REQUANT_REGISTERED, REQUANT_SERIAL_CYCLES, Config, requant_timing
from ..spec.requant import (ACC_BITS, INT32_MAX, INT32_MIN, MULTIPLIER_BITS, OUT_FORMATS, OUT_RANGES, ROUNDING,
                            SHIFT_BITS, SHIFT_MAX, ZERO_POINT_BITS)
from .dsp import registered_product

__all__ = ["RequantUnit"]

_ROUNDING_BITS = max(ROUNDING.values()).bit_length()
_FORMAT_BITS = max(OUT_FORMATS.values()).bit_length()
_WIDE = 2 * ACC_BITS  # holds every product v*m (|v*m| < 2**62) and every shifted value
_STEPS = 12           # logical steps of the pipeline (see RequantUnit)
assert all(len(set(steps)) == n and set(steps) <= set(range(_STEPS)) and _STEPS - 1 in steps
           for n, steps in REQUANT_REGISTERED.items()), "n distinct steps, the output register among them"
# The serial unit's schedule: accept, one step per multiplier bit, nudge (2), high half, SHIFT_MAX shift
# steps, round-up decision, round (2), saturate, clamp (the output register).
assert REQUANT_SERIAL_CYCLES == 1 + MULTIPLIER_BITS + 3 + SHIFT_MAX + 5

_Command = namedtuple("_Command", "tflite even enable zp lo hi lo_above_hi")   # decoded, registered


# The arithmetic both implementations share (see :mod:`tridsa.sw.requant` for the specification).
def _left_shift(cmd, shift):
    """TFLite's left shift ``max(31 - s, 0)``; 0 in the other modes."""
    return Mux(cmd.tflite & (shift < 31), 31 - shift, 0)[:5]


def _multiplier(cmd, mult):
    """The multiplier, 1 with requant disabled (then ``p = v``)."""
    return Mux(cmd.enable, mult, 1)[:MULTIPLIER_BITS]


def _right_shift(cmd, shift):
    """The rounding right shift ``e``: ``s``, TFLite's ``max(s - 31, 0)``, 0 with requant disabled."""
    return Mux(~cmd.enable, 0, Mux(cmd.tflite, Mux(shift > 31, shift - 31, 0), shift))[:SHIFT_BITS]


def _nudge(p):
    """TFLite's SaturatingRoundingDoublingHighMul nudge for the product ``p`` (``a * m`` never overflows)."""
    return Mux(p[-1], 1 - (1 << 30), 1 << 30)


def _high(q):
    """The nudged product divided by 2**31, truncating: floor, plus one for a negative inexact quotient."""
    return (q >> 31) + (q[-1] & (q[:31] != 0))


def _round_up(cmd, floor, top, below, negative):
    """Round ``floor = p >> e`` up when remainder > half + t (half = 2**(e-1) - 1), i.e. ``top`` (bit e-1 of
    p) and (t = 0 or ``below``: a lower remainder bit is set); t = (p < 0) for TFLite, 1 for a half-even
    tie that would leave floor + zp even, else 0."""
    t = Mux(cmd.tflite, negative, cmd.even & ~(floor[0] ^ cmd.zp[0]))
    return top & (~t | below)


def _saturate_add_zp(cmd, r, above=None, below=None):
    """sat32(r) + zp: the saturation from the bits above bit 31 (no comparator); ``above``, ``below``: r is above
    INT32_MAX / below INT32_MIN, if known (else from those bits)."""
    upper = r[31:]
    above = ~r[-1] & (upper != 0) if above is None else above
    below = r[-1] & ~upper.all() if below is None else below
    return Mux(above, INT32_MAX, Mux(below, INT32_MIN, r[:ACC_BITS].as_signed())) + cmd.zp


def _clamp(cmd, y):
    """clamp(sat32(r + zp)) = clamp(r + zp) because lo, hi fit int32; min(max(y, lo), hi) is hi when relu
    puts lo above hi."""
    return Mux(cmd.lo_above_hi | (y > cmd.hi), cmd.hi, Mux(y < cmd.lo, cmd.lo, y))


class RequantUnit(wiring.Component):
    """Requantize ``lanes`` int32 accumulators per cycle (see :mod:`tridsa.sw.requant`).

    Parameters
    ----------
    lanes:
        Values per row (an int in 1..256).
    per_cycle:
        Values requantized per cycle (a divisor of ``lanes``; default ``lanes``). With fewer, a row is
        split into ``lanes // per_cycle`` chunks that go through one ``per_cycle``-wide pipeline, one
        chunk per cycle, and is reassembled before ``o``: a row then takes that many cycles, and the
        unit needs ``per_cycle`` multipliers instead of ``lanes`` (small FPGAs).
    stages:
        ``Config.requant_stages``: register stages of the pipeline (a key of
        :data:`tridsa.spec.config.REQUANT_REGISTERED`), or 0 for the serial unit (below).

    Attributes
    ----------
    i: In(stream)
        Rows of ``{"x", "bias"}`` (int32 per lane) and per-lane ``"multiplier"`` (31 bits) and
        ``"shift"`` (6 bits, at most 62; larger values give unspecified results).
    enable, rounding, zero_point, out_format, relu: In
        Command constants (codes of ``ROUNDING``/``OUT_FORMATS``). They must stay stable from the cycle
        before the first row of a command until its last result has left ``o`` (they are registered). With ``enable`` low the unit passes
        ``wrap_int32(x + bias)`` through the same clamp (zero point taken as 0).
    o: Out(stream)
        Results, one row per input row in order, as int32 numbers of the output format.
    latency: int
        Cycles from an accepted input row (its last chunk) to its result on ``o`` when ``o`` never
        stalls: the ``stages`` pipeline stages (``REQUANT_SERIAL_CYCLES`` serial), plus the reassembly
        register of a chunked unit.
    interval: int
        Cycles between two accepted chunks: 1, or ``REQUANT_SERIAL_CYCLES`` for the serial unit.

    The pipeline has 12 logical steps, at most one wide adder or shifter each: (1) bias add, (2)
    TFLite's left shift, (3) four 16 x 16 partial products of the 32 x 31 multiply (one hard multiplier
    each), (4, 5) their sum, (6, 7) TFLite's doubling high multiply, (8) the rounding right shift by
    the multiple of 8 in the shift, (9) by the rest and the round-up decision, (10) increment, (11) saturation and zero point, (12) clamp. With
    ``stages=12`` each step ends in a register, so that the unit keeps up with the MAC array's clock on
    an FPGA; otherwise only the steps ``REQUANT_REGISTERED[stages]`` lists (0-based) do and the others
    are combinational: fewer flip-flops and a slower clock, the same results. The whole pipeline moves
    on unless its last stage holds a row that ``o`` does not take (``i.ready = ~o.valid | o.ready``: one
    gate). ``o.valid`` does not depend on ``o.ready``.

    The serial unit (``stages=0``, the smallest: no multiplier, no barrel shifter for the rounding shift)
    takes one chunk at a time and iterates over the bits of the multiplier and of the right shift, on a
    fixed schedule of ``REQUANT_SERIAL_CYCLES`` cycles whatever the data.
    """

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

    def __init__(self, lanes: int, per_cycle: int | None = None, stages: int = Config.requant_stages):
        if not isinstance(lanes, int) or isinstance(lanes, bool):
            raise TypeError(f"lanes must be an int (got {type(lanes).__name__})")
        if not 1 <= lanes <= 256:
            raise ValueError(f"lanes={lanes} is invalid: must be in 1..256")
        per_cycle = lanes if per_cycle is None else per_cycle
        if not isinstance(per_cycle, int) or isinstance(per_cycle, bool) or per_cycle < 1 or lanes % per_cycle:
            raise ValueError(f"per_cycle={per_cycle!r} is invalid: must be a divisor of lanes={lanes}")
        if not isinstance(stages, int) or stages not in (0, *REQUANT_REGISTERED):
            raise ValueError(f"stages={stages!r} is invalid: must be 0 or one of {sorted(REQUANT_REGISTERED)}")
        self.lanes, self.per_cycle, self.stages = lanes, per_cycle, stages
        self.chunks = lanes // per_cycle
        latency, self.interval = requant_timing(stages)
        self.latency = latency + (1 if self.chunks > 1 else 0)
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
        if self.chunks > 1:
            return self._elaborate_chunked()
        return self._elaborate_pipeline() if self.stages else self._elaborate_serial()

    def _elaborate_chunked(self):
        """Chunk k of a row goes in the k-th cycle; the pipeline's outputs fill ``o`` chunk by chunk."""
        m = Module()
        n, last = self.per_cycle, self.chunks - 1
        m.submodules.core = core = RequantUnit(n, stages=self.stages)
        for name in ("enable", "rounding", "zero_point", "out_format", "relu"):
            m.d.comb += getattr(core, name).eq(getattr(self, name))
        sel = Signal(range(self.chunks))
        # the chunk select of each lane's input multiplexers: a copy per lane (kept apart in synthesis)
        lane_sel = [Signal(range(self.chunks), name=f"sel_{lane}", attrs={"keep": 1}) for lane in range(n)]
        for name in ("x", "bias", "multiplier", "shift"):
            whole, part = getattr(self.i.payload, name), getattr(core.i.payload, name)
            for lane in range(n):
                m.d.comb += part[lane].eq(whole[lane_sel[lane] * n + lane])
        m.d.comb += [core.i.valid.eq(self.i.valid), self.i.ready.eq(core.i.ready & (sel == last))]
        with m.If(core.i.valid & core.i.ready):
            m.d.sync += [s.eq(Mux(sel == last, 0, sel + 1)) for s in (sel, *lane_sel)]

        out_sel = Signal(range(self.chunks))
        valid = Signal()
        row = Signal.like(self.o.payload, reset_less=True)        # the row being reassembled (``valid``: whole)
        m.d.comb += [self.o.valid.eq(valid), core.o.ready.eq(~valid | self.o.ready), self.o.payload.eq(row)]
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += valid.eq(0)
        with m.If(core.o.valid & core.o.ready):
            for lane in range(n):
                m.d.sync += row[out_sel * n + lane].eq(core.o.payload[lane])
            m.d.sync += out_sel.eq(Mux(out_sel == last, 0, out_sel + 1))
            with m.If(out_sel == last):
                m.d.sync += valid.eq(1)
        return m

    def _decode(self, m):
        """The command constants, decoded into registers (they are stable a cycle before the first row)."""
        tflite, even, enable = Signal(), Signal(), Signal()
        zp = Signal(signed(ZERO_POINT_BITS))
        lo, hi = Signal(signed(ACC_BITS + 1)), Signal(signed(ACC_BITS + 1))
        lo_above_hi = Signal()
        zp_now = Mux(self.enable, self.zero_point, 0)
        fmt_lo, fmt_hi = Signal(signed(ACC_BITS + 1)), Signal(signed(ACC_BITS + 1))
        above_lo, above_hi = Signal(), Signal()     # zp_now > fmt_lo, zp_now > fmt_hi: constants, no chain
        with m.Switch(self.out_format):
            for name, code in OUT_FORMATS.items():
                low, high = OUT_RANGES[name]
                with m.Case(code):
                    m.d.comb += [fmt_lo.eq(low), fmt_hi.eq(high), above_lo.eq(zp_now > low), above_hi.eq(zp_now > high)]
        m.d.sync += [
            enable.eq(self.enable),
            tflite.eq(self.enable & (self.rounding == ROUNDING["tflite"])),
            even.eq(self.enable & (self.rounding == ROUNDING["half_even"])),
            zp.eq(zp_now), lo.eq(Mux(self.relu & above_lo, zp_now, fmt_lo)), hi.eq(fmt_hi),
            lo_above_hi.eq(self.relu & above_hi),   # the raised lower bound (zp) is above hi >= fmt_lo
        ]
        return _Command(tflite, even, enable, zp, lo, hi, lo_above_hi)

    def _elaborate_pipeline(self):
        m = Module()
        cmd = self._decode(m)

        # Handshake: the whole pipeline moves on unless its last stage holds a row ``o`` does not take.
        # valid[j]: the j-th register stage (step registered[j]) holds a row.
        registered = REQUANT_REGISTERED[self.stages]
        valid = [Signal(name=f"valid{k + 1}") for k in range(self.stages)]
        move = Signal()
        m.d.comb += move.eq(~valid[-1] | self.o.ready)
        with m.If(move):
            m.d.sync += [v.eq(u) for v, u in zip(valid, [self.i.valid] + valid[:-1])]
        m.d.comb += [self.i.ready.eq(move), self.o.valid.eq(valid[-1])]

        payload = self.i.payload
        for lane in range(self.lanes):
            x, bias = payload.x[lane], payload.bias[lane]
            mult, shift = payload.multiplier[lane], payload.shift[lane]
            # Each step's registers of a lane move on with their own copy of ``move``, from their own copy of
            # the last stage's valid flag (kept apart in synthesis), so that no net enables more than one
            # step's registers of one lane (FPGA timing: ``o.ready`` drives a LUT per copy).
            moves = {}

            def step_move(k):
                if k not in moves:
                    last_valid = Signal(name=f"last_valid_{lane}_{k}", attrs={"keep": 1})
                    with m.If(move):
                        m.d.sync += last_valid.eq(([self.i.valid] + valid)[-2])
                    moves[k] = Signal(name=f"move_{lane}_{k}")
                    m.d.comb += moves[k].eq(~last_valid | self.o.ready)
                return moves[k]

            def stage(k, value, name):
                """``value`` at the end of step ``k`` (0-based): registered when the pipeline moves if
                ``registered`` lists step ``k``, else combinational."""
                sig = Signal(Value.cast(value).shape(), name=f"{name}_{lane}", reset_less=True)   # valid[] say which hold rows
                if k in registered:
                    with m.If(step_move(k)):
                        m.d.sync += sig.eq(value)
                else:
                    m.d.comb += sig.eq(value)
                return sig

            def products(k, pairs, name):
                """Steps ``k - 1`` and ``k``: each ``(a, b)`` of ``pairs`` into an input register, its product
                (its exact shape) into a register. When both steps are registered, the two registers are
                those of :func:`~tridsa.hw.dsp.registered_product` (a ``MULT18X18D``'s on an ECP5, enabled by
                step ``k``'s move), so no fabric routing lands in the multiply (FPGA timing)."""
                if {k - 1, k} <= set(registered):
                    return [registered_product(m, a, b, f"{name}{i}_{lane}", ce=step_move(k))
                            for i, (a, b) in enumerate(pairs)]
                return [stage(k, stage(k - 1, a, f"{name}{i}_a") * stage(k - 1, b, f"{name}{i}_b"), f"{name}{i}")
                        for i, (a, b) in enumerate(pairs)]

            # 1: v = wrap32(x + bias); TFLite's left shift amount; effective multiplier and right shift.
            v = stage(0, (x + bias)[:ACC_BITS].as_signed(), "v")
            left = stage(0, _left_shift(cmd, shift), "left")
            m1 = stage(0, _multiplier(cmd, mult), "m1")
            e1 = stage(0, _right_shift(cmd, shift), "e1")
            # 2: a = wrap32(v << left); 3: the 32 x 31 product as four 16 x 16 partial products (one hard
            # multiplier each).
            a2 = (v << left)[:ACC_BITS].as_signed()
            e2 = stage(1, e1, "e2")
            a_lo, a_hi, m_lo, m_hi = a2[:16], a2[16:].as_signed(), m1[:16], m1[16:]
            ll, hh, lh, hl = products(2, [(a_lo, m_lo), (a_hi, m_hi), (a_lo, m_hi), (a_hi, m_lo)], "pp")
            e3 = stage(2, e2, "e3")
            # 4: ll + hh * 2**32 needs no adder (0 <= ll < 2**32); the middle terms are added.
            base = stage(3, Cat(ll[:32], hh).as_signed(), "base")
            mid = stage(3, lh + hl, "mid")
            e4 = stage(3, e3, "e4")
            # 5: p = a * m (|p| < 2**62).
            p = stage(4, (base + (mid << 16))[:_WIDE].as_signed(), "p")
            e5 = stage(4, e4, "e5")
            # 6: TFLite's SaturatingRoundingDoublingHighMul, first the nudge (a * m never overflows).
            q = stage(5, (p + _nudge(p))[:_WIDE].as_signed(), "q")
            p6, e6 = stage(5, p, "p6"), stage(5, e5, "e6")
            # 7: truncating division by 2**31: floor, plus one for a negative inexact quotient.
            p7 = stage(6, Mux(cmd.tflite, _high(q), p6)[:_WIDE].as_signed(), "p7")
            e7 = stage(6, e6, "e7")
            # 8 and 9: floor(p / 2**e), bit e - 1 of p (``top``: remainder >= divisor / 2) and whether a lower
            # bit is set (``below``), in two steps of a short shift each: e = 8 * c + f. Step 8 shifts by 8 * c
            # and keeps bit 8 * c - 1 (``cut_top``) and whether a lower one is set (``cut_below``); step 9
            # shifts by f, takes top and below from the shifted value (or the cut's bits when f = 0) and
            # decides the round up (see _round_up).
            coarse, fine = e7[3:], e7[:3]
            cut_top = Cat(Const(0, 1), *(p7[8 * k - 1] for k in range(1, 8))).bit_select(coarse, 1)
            cut_below = (p7.as_unsigned() & Cat(Const(i + 1, 7) < Cat(Const(0, 3), coarse) for i in range(_WIDE))) != 0
            p8 = stage(7, (p7 >> Cat(Const(0, 3), coarse))[:_WIDE].as_signed(), "p8")
            f8 = stage(7, fine, "f8")
            top8, below8 = stage(7, cut_top, "top8"), stage(7, cut_below, "below8")
            negative = stage(7, p7[_WIDE - 1], "negative")
            floor = (p8 >> f8)[:_WIDE].as_signed()
            top = Cat(top8, p8[:7]).bit_select(f8, 1)
            below = Mux(f8 == 0, below8, ((p8[:8] & Cat(Const(i + 1, 4) < f8 for i in range(8))) != 0) | top8 | below8)
            # 10: r = floor + up.
            f9 = stage(8, floor, "f9")
            up9 = stage(8, _round_up(cmd, floor, top, below, negative), "up9")
            r = stage(9, f9 + up9, "r")
            # 11: sat32(r) + zp; 12: clamp, always registered (the table's last entry): o.valid's row.
            y = stage(10, _saturate_add_zp(cmd, r), "y")
            m.d.comb += self.o.payload[lane].eq(stage(11, _clamp(cmd, y), "out"))

        return m

    def _elaborate_serial(self):
        """Per lane, ``hi`` (33 bits, signed) and ``lo`` (31 bits) hold the 64-bit value ``hi * 2**31 + lo``.
        One step adds ``a`` or nothing to ``hi`` and shifts the pair right by a bit. Schedule (cycles after
        the accepting one): 31 steps over the multiplier's bits, LSB first, leave ``p = a * m``; NUDGE (two
        cycles) and HIGH make TFLite's doubling high multiply; 62 SHIFT steps, the first ``e`` of which
        shift (adding nothing) while ``top`` keeps the bit shifted out last and ``below`` whether an
        earlier one was set; DECIDE (registers the round-up bit), ROUND (two cycles; the second registers
        whether the value leaves int32), SATURATE, CLAMP (into
        ``o``, waiting while ``o`` holds an untaken result)."""
        m = Module()
        cmd = self._decode(m)
        payload = self.i.payload
        shapes = {"a": signed(ACC_BITS), "hi": signed(ACC_BITS + 1), "lo": 31, "mult": MULTIPLIER_BITS,
                  "e": SHIFT_BITS, "top": 1, "below": 1, "up": 1, "carry": 1, "inexact": 1, "over": 1, "under": 1,
                  "y": signed(ACC_BITS + 1)}
        lanes = [SimpleNamespace(**{name: Signal(shape, name=f"{name}_{k}") for name, shape in shapes.items()})
                 for k in range(self.lanes)]
        count = Signal(range(SHIFT_MAX))
        valid = Signal()
        m.d.comb += self.o.valid.eq(valid)
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += valid.eq(0)

        def value(lane):
            return Cat(lane.lo, lane.hi).as_signed()

        def load(lane, v):
            """``hi, lo = v`` (|v| < 2**63)."""
            return [lane.lo.eq(v[:31]), lane.hi.eq(v >> 31)]

        def step(lane, add):
            s = lane.hi + Mux(add, lane.a, 0)
            return [lane.hi.eq(s >> 1), lane.lo.eq(Cat(lane.lo[1:], s[0]))]

        with m.FSM() as fsm:
            with m.State("IDLE"):
                m.d.comb += self.i.ready.eq(1)
                with m.If(self.i.valid):
                    for k, lane in enumerate(lanes):
                        shift = payload.shift[k]
                        v = (payload.x[k] + payload.bias[k])[:ACC_BITS].as_signed()
                        m.d.sync += [lane.a.eq((v << _left_shift(cmd, shift))[:ACC_BITS].as_signed()),
                                     lane.mult.eq(_multiplier(cmd, payload.multiplier[k])),
                                     lane.e.eq(_right_shift(cmd, shift)), lane.hi.eq(0), lane.lo.eq(0)]
                    m.d.sync += count.eq(0)
                    m.next = "MULTIPLY"
            with m.State("MULTIPLY"):
                for lane in lanes:
                    m.d.sync += lane.mult.eq(lane.mult >> 1)
                m.d.sync += count.eq(count + 1)
                with m.If(count == MULTIPLIER_BITS - 1):
                    m.d.sync += count.eq(0)
                    m.next = "NUDGE"
            with m.State("NUDGE"):
                m.next = "NUDGE_HI"
            with m.State("NUDGE_HI"):
                for lane in lanes:
                    m.d.sync += lane.inexact.eq(lane.lo != 0)
                m.next = "HIGH"
            with m.State("HIGH"):
                for lane in lanes:
                    with m.If(cmd.tflite):     # _high, with q[:31] != 0 registered in NUDGE_HI
                        m.d.sync += load(lane, lane.hi + (lane.hi[-1] & lane.inexact))
                    m.d.sync += [lane.top.eq(0), lane.below.eq(0)]
                m.next = "SHIFT"
            with m.State("SHIFT"):
                m.d.sync += count.eq(count + 1)
                with m.If(count == SHIFT_MAX - 1):
                    m.next = "DECIDE"
            with m.State("DECIDE"):
                for lane in lanes:
                    m.d.sync += lane.up.eq(_round_up(cmd, value(lane), lane.top, lane.below, lane.hi[-1]))
                m.next = "ROUND"
            with m.State("ROUND"):
                m.next = "ROUND_HI"
            with m.State("ROUND_HI"):
                m.next = "SATURATE"
            with m.State("SATURATE"):
                for lane in lanes:
                    m.d.sync += lane.y.eq(_saturate_add_zp(cmd, value(lane), lane.over, lane.under))
                m.next = "CLAMP"
            with m.State("CLAMP"):
                with m.If(~valid | self.o.ready):
                    for k, lane in enumerate(lanes):
                        m.d.sync += self.o.payload[k].eq(_clamp(cmd, lane.y))
                    m.d.sync += valid.eq(1)
                    m.next = "IDLE"
        # The datapath steps, by state: one adder for the multiply and shift steps; one for NUDGE and ROUND,
        # which add a signed ``amount`` (|amount| < 2**31) to ``hi, lo`` in two cycles: ``lo`` and a carry,
        # then ``hi`` (two short carry chains instead of a 64-bit one).
        multiply = fsm.ongoing("MULTIPLY")
        state = {name: fsm.ongoing(name) for name in ("NUDGE", "NUDGE_HI", "ROUND", "ROUND_HI")}
        for lane in lanes:
            shifting = fsm.ongoing("SHIFT") & (count < lane.e)
            with m.If(multiply | shifting):
                m.d.sync += step(lane, multiply & lane.mult[0])
            with m.If(shifting):             # the bit leaving ``lo`` and whether an earlier one was set
                m.d.sync += [lane.top.eq(lane.lo[0]), lane.below.eq(lane.below | lane.top)]
            amount = Mux(state["NUDGE"] | state["NUDGE_HI"], _nudge(value(lane)), lane.up)
            with m.If((state["NUDGE"] & cmd.tflite) | state["ROUND"]):
                low = lane.lo + amount[:31]
                m.d.sync += [lane.lo.eq(low[:31]), lane.carry.eq(low[31])]
            with m.If(state["ROUND_HI"]):
                # whether the value leaves int32, from ``hi`` before it adds the carry (the value's bits above
                # bit 30 are ``hi + carry``), so that SATURATE starts at registers (FPGA timing)
                zero, ones, minus_two = lane.hi == 0, lane.hi == -1, lane.hi == -2
                carry = lane.carry
                negative = lane.hi[-1] & ~(ones & carry)
                nonzero = ~((zero & ~carry) | (ones & carry))
                all_ones = (ones & ~carry) | (minus_two & carry)
                m.d.sync += [lane.over.eq(~negative & nonzero), lane.under.eq(negative & ~all_ones)]
            with m.If((state["NUDGE_HI"] & cmd.tflite) | state["ROUND_HI"]):
                m.d.sync += lane.hi.eq(lane.hi + (amount >> 31) + lane.carry)
        return m
