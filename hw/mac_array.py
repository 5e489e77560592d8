"""Output-stationary systolic MAC array.

Why output-stationary (OS) and not weight-stationary (WS): in OS every PE keeps its int32 accumulator
for the whole K reduction, so any K streams through without an accumulator SRAM or partial-sum
read-modify-write, and both operands arrive as plain k-rows that the driver lays out once. WS needs the
weight tile preloaded (R cycles per tile unless double-buffered) and partial sums for K > R written
back to an accumulator memory. With OS, back-to-back tiles cost nothing: the ``first`` flag restarts
the accumulator in the same cycle the previous tile's ``last`` product lands in ``result``.

Protocol: each cycle the feeder may present one k-step: ``a`` (one byte per row), ``b`` (one byte per
column) and ``ctrl = {valid, first, last}``. The inputs are registered (``FEED_STAGES``, so the feeder's
multiplexers end at a register), then row ``i`` is skewed by ``row_skew(i, row_group)`` cycles (``i``, and
one more per register on the links between groups of ``row_group`` rows) and column ``j`` by ``j``, so PE
(i, j) sees the k-step at cycle ``t + 1 + row_skew(i, row_group) + j``. On ``last`` a PE latches its sum into
``result``; ``out_valid`` pulses once per array row when that row's results (``out_row``) are
complete (rows leave in order, at most one per cycle; the array cannot be stalled). Invariant the feeder must keep: two ``last`` k-steps are at least
``MacArray.min_tile_cycles`` cycles apart, so a result is read before it is overwritten. A reset drops the
k-steps in flight; the array takes k-steps again from the second cycle after it. ``mode`` holds from the
cycle before a tile's first k-step to its last (the INT4 array packs the operands at its edge with a
registered copy of it per lane).
"""
from amaranth import *
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..spec.gemm_layout import FEED_STAGES, PE_LATENCY, READOUT_GROUP, min_tile_cycles, readout_stages, row_skew  # shared with the cycle model
from .dsp import LATENCY as DSP_LATENCY, Mac16Dual8x8, Mult18x18, platform_family

assert PE_LATENCY == 4 and DSP_LATENCY == 2, "ProcessingElement is written for four stages, two of them a DSP's"

__all__ = ["CTRL", "MODE", "PACKED", "ProcessingElement", "MacArray", "pack_operands", "pe_kinds", "dsp_blocks", "or_reduce", "delay"]

CTRL = data.StructLayout({"valid": 1, "first": 1, "last": 1})
MODE = data.StructLayout({"int4": 1, "a_signed": 1, "b_signed": 1})


def delay(m, value, cycles, name, keep=False, first_index=0, reset_less=False, flush=None):
    """``value`` through ``cycles`` registers named ``name0, name1, ...`` (numbered from ``first_index``).

    ``reset_less`` for data: the array's operands, products and results have no reset (the control's
    ``valid`` says whether they count). The control's registers have none either; ``flush`` (a signal
    that is high the cycle after a reset) clears them instead, so no reset net (the soft clear's reaches
    every register that has one) reaches into the array.

    ``keep`` for the copies the array holds on purpose: control and mode travel PE to PE so that no net
    reaches every PE, so all PEs on an anti-diagonal hold equal values, and synthesis would merge those
    registers into one that drives the whole diagonal again (sw/build.py copies ``keep`` from these wires
    onto their flip-flop cells, which stops that)."""
    for stage in range(cycles):
        reg = Signal.like(value, name=f"{name}{first_index + stage}", attrs={"keep": 1} if keep else {},
                          reset_less=reset_less or flush is not None)
        m.d.sync += reg.eq(value if flush is None else Mux(flush, 0, value))
        value = reg
    return value


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


class _Operands:
    """A PE's operand bytes as signed values by ``mode``: ``a8``, ``b8`` (9 bits) and the INT4 nibbles ``a4 =
    (a_lo, a_hi)``, ``b4 = (b_lo, b_hi)`` (5 bits each)."""

    def __init__(self, a, b, mode):
        def extend(value, top, signed):
            return Cat(value, value[top] & signed).as_signed()
        self.a8, self.b8 = extend(a, 7, mode.a_signed), extend(b, 7, mode.b_signed)
        self.a4 = extend(a[0:4], 3, mode.a_signed), extend(a[4:8], 3, mode.a_signed)
        self.b4 = extend(b[0:4], 3, mode.b_signed), extend(b[4:8], 3, mode.b_signed)


#: An operand of the INT4-capable multiplier PE, packed for the 18 x 18 multiply: ``value`` (the int8 operand or the
#: INT4 pair as above; |value| < 2**15) and the sign test of the nibble that lands in the low term (``nz``: it
#: is not zero, ``neg``: it is negative), a's low nibble and b's high one.
PACKED = data.StructLayout({"value": signed(16), "nz": 1, "neg": 1})


def pack_operands(a, b, mode):
    """The bytes ``a``, ``b`` as :data:`PACKED` operands by ``mode`` (two Values): ``a_lo + a_hi * 2**S`` and
    ``b_hi + b_lo * 2**S`` in INT4 mode, the int8 values otherwise."""
    x = _Operands(a, b, mode)
    (a_lo, a_hi), (b_lo, b_hi) = x.a4, x.b4
    return (Cat(Mux(mode.int4, a_lo + (a_hi << _S), x.a8)[:16], a_lo != 0, a_lo[4]),
            Cat(Mux(mode.int4, b_hi + (b_lo << _S), x.b8)[:16], b_hi != 0, b_hi[4]))


class ProcessingElement(wiring.Component):
    """One PE: an int8 x int8 MAC, or (``int4``) two int4 x int4 MACs on packed operands, into an int32
    accumulator.

    INT4 operands hold element k in the low nibble and k+1 in the high nibble of the byte.
    Operands, control and mode are registered on to the right (a, ctrl, mode) and down (b) neighbours (so
    the mode reaches each PE from a neighbour's register, not over one net to every PE). Four stages, so
    that the operand packing, a hard multiplier, a LUT multiplier's adder tree and the 32-bit accumulate
    each get a cycle: (0) operands (a DSP's input register, or the LUT multiplier's operand register),
    (1) multiply (a DSP's output register, or the LUT tree's top partial sums), (2) the product (the INT4
    multiplier PE: the DSP's product bits as they are, so no logic sits between the DSP and the fabric
    register), (3) accumulate (the INT4 multiplier PE: the int8 product or the int4 dot product selected
    from them, its sign correction as the adder's carry-in); ``result`` is latched ``latency`` cycles after
    the ``last`` k-step came in. ``flush`` clears the control registers (the data registers and they have
    no reset: :class:`MacArray` drives it the cycle after a reset).

    Parameters
    ----------
    kind:
        ``"mult18"``: one 18 x 18 signed multiply (:class:`tridsa.hw.dsp.Mult18x18`, the ECP5 ``MULT18X18D``;
        the INT4 pair packed into it as above). ``"mac8"``: half of an iCE40 ``SB_MAC16`` in dual 8 x 8
        mode (:class:`tridsa.hw.dsp.Mac16Dual8x8`, shared with a neighbour by :class:`MacArray`; INT8 only):
        the PE drives ``dsp_a``, ``dsp_b`` and gets the product on ``dsp_p`` two cycles later. The SB_MAC16's
        signedness is a synthesis parameter, so it multiplies the bytes as signed and the PE adds
        ``2**8 * (ca * b + cb * a_s)`` for an operand that is unsigned with its top bit set (``ca``,
        ``cb``; ``b`` the true value of the other operand, ``a_s`` the a byte read as signed).
        ``"lut"``: LUT partial products (:func:`lut_multiply`).
    int4:
        Build the INT4 mode (else ``mode.int4`` must stay 0).
    primitive:
        ``"mult18"``: instantiate ``MULT18X18D`` (True), its behavioural model (False) or by platform ("auto").
    dsp_delay:
        ``"mac8"`` only: cycles the DSP operands are delayed (0 or 1), so that two PEs whose k-steps arrive a
        cycle apart use one SB_MAC16 in the same cycle; ``result`` is latched that much later.
    packed:
        ``"mult18"`` with ``int4`` only: ``a_in``/``b_in`` (and ``a_out``/``b_out``) are :data:`PACKED` operands,
        packed once at the array's edge, so the neighbour's register feeds the DSP's input register with no
        logic between them.
    """
    latency = PE_LATENCY

    def __init__(self, kind="mult18", int4=True, primitive="auto", dsp_delay=0, packed=False):
        if kind not in ("mult18", "mac8", "lut"):
            raise ValueError(f"kind must be \"mult18\", \"mac8\" or \"lut\", not {kind!r}")
        if kind == "mac8" and int4:
            raise ValueError("the SB_MAC16 8 x 8 PE (kind=\"mac8\") has no INT4 mode: build it with int4=False")
        if dsp_delay not in (0, 1) or (dsp_delay and kind != "mac8"):
            raise ValueError(f"dsp_delay must be 0, or 1 for kind=\"mac8\", not {dsp_delay!r}")
        if packed and not (kind == "mult18" and int4):
            raise ValueError("packed operands are for the INT4 multiplier PE (kind=\"mult18\", int4=True)")
        self.kind, self.int4, self.primitive, self.dsp_delay, self.packed = kind, int4, primitive, dsp_delay, packed
        operand = PACKED if packed else 8
        members = {"a_in": In(operand), "b_in": In(operand), "ctrl_in": In(CTRL), "mode": In(MODE), "flush": In(1),
                   "a_out": Out(operand), "mode_out": Out(MODE), "b_out": Out(operand), "ctrl_out": Out(CTRL),
                   "result": Out(signed(32))}
        if kind == "mac8":
            members.update({"dsp_a": Out(signed(8)), "dsp_b": Out(signed(8)), "dsp_p": In(signed(16))})
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        a_in, b_in, mode_in = self.a_in, self.b_in, self.mode
        m.d.comb += [self.a_out.eq(delay(m, a_in, 1, "a_out", reset_less=True)),
                     self.b_out.eq(delay(m, b_in, 1, "b_out", reset_less=True)),
                     self.ctrl_out.eq(delay(m, self.ctrl_in, 1, "ctrl_out", keep=True, flush=self.flush)),
                     self.mode_out.eq(delay(m, mode_in, 1, "mode_out", keep=True, reset_less=True))]

        # The accumulator adds ``product`` (a stage-2 register, or selected from stage-2 registers) and ``carry``
        product = Signal(signed(18), reset_less=True)
        carry = C(0, 1)
        if self.kind == "mult18":
            m.submodules.mult = mult = Mult18x18(self.primitive)      # stages 0 and 1
            if self.int4:
                # The packed operands go into the DSP's input register: from the neighbour, or packed here.
                # The DSP's product bits go straight into a register (no logic between the DSP and the
                # fabric); the dot product's sign correction (+1) is the accumulator's carry-in.
                a, b = (a_in, b_in) if self.packed else (data.View(PACKED, v) for v in pack_operands(a_in, b_in, mode_in))
                m.d.comb += [mult.a.eq(a.value), mult.b.eq(b.value)]
                raw = delay(m, mult.p[:_S + 10], 1, "raw", reset_less=True)
                int4 = delay(m, mode_in.int4, 3, "int4_", keep=True, reset_less=True)
                carry = delay(m, mode_in.int4 & a.nz & b.nz & (a.neg ^ b.neg), 3, "low_negative", reset_less=True)
                m.d.comb += product.eq(Mux(int4, raw[_S:_S + 10].as_signed(), raw[:18].as_signed()))
            else:
                x = _Operands(a_in, b_in, mode_in)
                m.d.comb += [mult.a.eq(x.a8), mult.b.eq(x.b8)]
                m.d.sync += product.eq(mult.p[:18].as_signed())
        elif self.kind == "mac8":
            stage0 = _Operands(self.a_out, self.b_out, self.mode_out)     # the pass-through registers
            source_a, source_b = (a_in, b_in) if self.dsp_delay == 0 else (self.a_out, self.b_out)
            m.d.comb += [self.dsp_a.eq(source_a.as_signed()), self.dsp_b.eq(source_b.as_signed())]
            # The sign correction, from the stage-0 copies of the operands (the pass-through registers),
            # registered beside the DSP's product register (and one more cycle with the delay)
            a, b, mode = self.a_out, self.b_out, self.mode_out
            a_fix, b_fix = a[7] & ~mode.a_signed, b[7] & ~mode.b_signed
            correction = Mux(a_fix, stage0.b8, 0) + Mux(b_fix, a.as_signed(), 0)
            correction = delay(m, correction[:10].as_signed(), 1 + self.dsp_delay, "correction", reset_less=True)
            m.d.sync += product.eq(self.dsp_p + (correction << 8))
        else:
            stage0 = _Operands(self.a_out, self.b_out, self.mode_out)     # the pass-through registers
            a8, b8, mode = stage0.a8, stage0.b8, self.mode_out
            halves = [Signal(signed(18), name=f"half{i}", reset_less=True) for i in range(2)]      # stage 1
            if self.int4:
                (a_lo, a_hi), (b_lo, b_hi) = stage0.a4, stage0.b4
                int8_halves = lut_multiply(a8, b8, terms=2)
                m.d.sync += [halves[0].eq(Mux(mode.int4, lut_multiply(a_lo, b_lo)[0], int8_halves[0])),
                             halves[1].eq(Mux(mode.int4, lut_multiply(a_hi, b_hi)[0], int8_halves[1]))]
            else:
                m.d.sync += [h.eq(v) for h, v in zip(halves, lut_multiply(a8, b8, terms=2))]
            m.d.sync += product.eq(halves[0] + halves[1])

        # The k-step's control at stage 2 (``ahead``) and at stage 3. The accumulator is cleared (a flip-flop's
        # synchronous reset) the cycle before a tile's first k-step reaches stage 3, so the adder has no
        # multiplexer in front of it; the previous tile's last k-step, if in stage 3 then, still goes to ``result``.
        stages = self.latency - 1 + self.dsp_delay
        ahead = delay(m, self.ctrl_in, stages - 1, "ctrl", keep=True, flush=self.flush)
        ctrl = delay(m, ahead, 1, "ctrl", keep=True, first_index=stages - 1, flush=self.flush)
        acc = Signal(signed(32), reset_less=True)      # cleared by the tile's first k-step
        result = Signal(signed(32), reset_less=True)
        m.d.comb += self.result.eq(result)
        total = Signal(signed(32))
        addend = Signal(signed(32))
        m.d.comb += addend.eq(product)
        # acc + product + carry on one carry chain: the carry enters through a bit below the sum
        m.d.comb += total.eq((Cat(C(1, 1), acc) + Cat(carry, addend))[1:33])
        with m.If(ahead.valid & ahead.first):
            m.d.sync += acc.eq(0)
        with m.Elif(ctrl.valid):
            m.d.sync += acc.eq(total)
        with m.If(ctrl.valid & ctrl.last):
            m.d.sync += result.eq(total)
        return m


class MacArray(wiring.Component):
    """``rows x cols`` grid of :class:`ProcessingElement` with input skew and row readout.

    ``hard_multipliers``: how many PEs (row-major) multiply on a hard DSP, the rest LUT PEs (None: all
    hard); ``int4``: build the INT4 mode. Neither changes results or timing, only what synthesis makes.

    ``family`` picks the hard PE: ``"ecp5"`` (and None, the generic PE) one 18 x 18 multiply per PE
    (``MULT18X18D``); ``"ice40"`` without INT4: two PEs of a row, columns 2c and 2c + 1, share one
    ``SB_MAC16`` in dual 8 x 8 mode (the first PE delays its operands a cycle, so both k-steps enter the DSP
    together; a lone hard PE has a DSP of its own); ``"auto"``: the elaborating platform's family.
    ``primitives``: instantiate the DSP primitives (True), use their behavioural models (False), or
    instantiate them when elaborated for an FPGA platform (``"auto"``). ``row_group``: rows per group
    (``Config.row_group``; 0: none); the b operand links into the first row of each group after the first
    have a second register, and the other rows' inputs are delayed to match.
    """

    def __init__(self, rows, cols, hard_multipliers=None, int4=True, family="auto", primitives="auto", row_group=0):
        if rows < 1 or cols < 1:
            raise ValueError(f"MacArray needs rows, cols >= 1, got {rows}x{cols}")
        if family not in ("auto", None, "ice40", "ecp5"):
            raise ValueError(f"family must be \"auto\", None, \"ice40\" or \"ecp5\", not {family!r}")
        self.rows, self.cols = rows, cols
        self.hard_multipliers = rows * cols if hard_multipliers is None else hard_multipliers
        self.int4, self.family, self.primitives, self.row_group = int4, family, primitives, row_group
        self.min_tile_cycles = min_tile_cycles(rows, cols, row_group)
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
        family = platform_family(platform) if self.family == "auto" else self.family

        kinds = pe_kinds(R, C, self.hard_multipliers, self.int4, family)
        # Operands packed for the INT4 multiplier once, at the array's inputs, when every PE takes them
        packed = self.int4 and all(kind == "mult18" for row in kinds for kind, _ in row)
        # A reset (power-up or the soft clear) drops the k-steps in flight: ``flush[i]``, a register that the
        # reset sets for a cycle, clears the control registers of row i (which have no reset, like the data),
        # so the reset net reaches one register per row instead of every control register of the array.
        flush = []
        for i in range(R):
            flush.append(Signal(init=1, name=f"flush{i}", attrs={"keep": 1}))
            m.d.sync += flush[i].eq(0)
        pes = [[ProcessingElement(kind, int4=self.int4 and kind != "mac8", primitive=self.primitives, dsp_delay=delayed,
                                  packed=packed) for kind, delayed in row] for row in kinds]
        a_edge, b_edge = [self.a[i] for i in range(R)], [self.b[j] for j in range(C)]
        if packed:      # each edge lane packs with a registered copy of the mode of its own (kept apart)
            a_edge = [pack_operands(a, Const(0, 8), delay(m, self.mode, 1, f"pack_mode_a{i}_", keep=True,
                                                          reset_less=True))[0] for i, a in enumerate(a_edge)]
            b_edge = [pack_operands(Const(0, 8), b, delay(m, self.mode, 1, f"pack_mode_b{j}_", keep=True,
                                                          reset_less=True))[1] for j, b in enumerate(b_edge)]
        for i in range(R):
            for j in range(C):
                pe = pes[i][j]
                m.submodules[f"pe_{i}_{j}"] = pe
                m.d.comb += pe.flush.eq(flush[i])
                if j == 0:
                    skew = FEED_STAGES + row_skew(i, self.row_group)
                    m.d.comb += [pe.a_in.eq(delay(m, a_edge[i], skew, f"a{i}_d", reset_less=True)),
                                 pe.ctrl_in.eq(delay(m, self.ctrl, skew, f"ctrl{i}_d", keep=True, flush=flush[i])),
                                 pe.mode.eq(delay(m, self.mode, skew, f"mode{i}_d", keep=True, reset_less=True))]
                else:
                    m.d.comb += [pe.a_in.eq(pes[i][j - 1].a_out), pe.ctrl_in.eq(pes[i][j - 1].ctrl_out),
                                 pe.mode.eq(pes[i][j - 1].mode_out)]
                if i == 0:
                    m.d.comb += pe.b_in.eq(delay(m, b_edge[j], FEED_STAGES + j, f"b{j}_d", reset_less=True))
                else:           # a second register on the link into a new group of rows
                    link = row_skew(i, self.row_group) - row_skew(i - 1, self.row_group) - 1
                    m.d.comb += pe.b_in.eq(delay(m, pes[i - 1][j].b_out, link, f"b{i}_{j}_link", reset_less=True))
                # SB_MAC16: the top half for a PE that delays its operands (or a lone PE), the bottom half for
                # its right neighbour
                if pe.kind == "mac8" and (pe.dsp_delay or not (j % 2 and pes[i][j - 1].dsp_delay)):
                    m.submodules[f"dsp_{i}_{j}"] = dsp = Mac16Dual8x8(self.primitives)
                    m.d.comb += [dsp.a_top.eq(pe.dsp_a), dsp.b_top.eq(pe.dsp_b), pe.dsp_p.eq(dsp.top)]
                    if pe.dsp_delay:
                        right = pes[i][j + 1]
                        m.d.comb += [dsp.a_bot.eq(right.dsp_a), dsp.b_bot.eq(right.dsp_b), right.dsp_p.eq(dsp.bot)]
        # Row i is complete when its last PE has latched (``latency - 1`` cycles after that PE passed the
        # ``last`` k-step on; a PE that delays its DSP operands is never the last of a row, and latches no
        # later than it): at most one row completes per cycle.
        # ``done[i][j]``: row i is done, one copy per column (its last register kept apart, so that no flag
        # drives the gates of a whole row of results across the array) and one for the valid flag (index C).
        done = []
        for i in range(R):
            last = delay(m, pes[i][C - 1].ctrl_out.valid & pes[i][C - 1].ctrl_out.last, ProcessingElement.latency - 2,
                         f"done{i}_d", keep=True, flush=flush[i])
            done.append([delay(m, last, 1, f"done{i}_{j}_d", keep=True, flush=flush[i]) for j in range(C + 1)])
        # The readout: an OR of the results gated by ``done`` (at most one row is done per cycle); for more
        # than READOUT_GROUP rows registered per group of rows (next to them), then an OR over the groups
        # (``readout_stages``).
        def gated(rows):
            return Cat(done[i][C] for i in rows).any(), [or_reduce([Mux(done[i][j], pes[i][j].result, 0) for i in rows])
                                                         for j in range(C)]
        groups = [range(g, min(g + READOUT_GROUP, R)) for g in range(0, R, READOUT_GROUP)]
        if len(groups) == 1:
            valid, row = gated(groups[0])
        else:
            parts = [(Signal(name=f"part{n}_valid"), [Signal(signed(32), name=f"part{n}_{j}", reset_less=True)
                                                       for j in range(C)])
                     for n in range(len(groups))]
            for (part_valid, part), rows in zip(parts, groups):
                group_valid, group_row = gated(rows)
                m.d.sync += [part_valid.eq(group_valid & ~flush[rows[0]]), *(p.eq(v) for p, v in zip(part, group_row))]
            valid = Cat(v for v, _ in parts).any()
            row = [or_reduce([part[j] for _, part in parts]) for j in range(C)]
        assert 1 + (len(groups) > 1) == readout_stages(R)
        out_row = Signal.like(self.out_row, reset_less=True)
        m.d.comb += self.out_row.eq(out_row)
        m.d.sync += [self.out_valid.eq(valid & ~flush[0]), *(out_row[j].eq(row[j]) for j in range(C))]
        return m


def pe_kinds(rows, cols, hard_multipliers, int4, family):
    """``[row][col] -> (kind, dsp_delay)`` of each :class:`ProcessingElement` of a :class:`MacArray` built for
    ``family`` (``hard_multipliers``: None = all)."""
    hard_multipliers = rows * cols if hard_multipliers is None else hard_multipliers
    mac8 = family == "ice40" and not int4

    def hard(i, j):
        return j < cols and i * cols + j < hard_multipliers

    def kind(i, j):
        if not hard(i, j):
            return "lut", 0
        if mac8:
            return "mac8", int(j % 2 == 0 and hard(i, j + 1))
        return "mult18", 0
    return [[kind(i, j) for j in range(cols)] for i in range(rows)]


def dsp_blocks(rows, cols, hard_multipliers, int4, family):
    """DSP blocks (MULT18X18D / SB_MAC16) of a :class:`MacArray` built for ``family``: one per hard PE, or
    with SB_MAC16 one per pair of PEs that share it and one per lone hard PE."""
    kinds = [k for row in pe_kinds(rows, cols, hard_multipliers, int4, family) for k in row]
    mac8 = [delayed for kind, delayed in kinds if kind == "mac8"]
    return sum(kind == "mult18" for kind, _ in kinds) + len(mac8) - sum(mac8)


def or_reduce(values):
    """The OR of ``values`` (AND-OR selections: at most one of them is not zero)."""
    result = values[0]
    for v in values[1:]:
        result = result | v
    return result
