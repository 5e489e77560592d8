"""Lattice hard multipliers as components: the primitive on an FPGA, a behavioural model elsewhere.

Both blocks are used with their registers on, so the multiply sits between a DSP input register and
a DSP output register and no fabric routing lands in the multiplier's cycle:

* :class:`Mult18x18` - ECP5 ``MULT18X18D``: ``p = a * b``, 18 x 18 signed, input registers A and B and the
  output register (``REG_INPUTA_CLK = REG_INPUTB_CLK = REG_OUTPUT_CLK = "CLK0"``, no pipeline register).
* :class:`Mac16Dual8x8` - iCE40 ``SB_MAC16`` in dual 8 x 8 mode: two signed 8 x 8 products (``top = a_top *
  b_top``, ``bot = a_bot * b_bot``), input registers A and B and the two 8 x 8 product registers.

Latency 2 for both: operands presented in cycle t give the product in cycle t + 2. The resets are tied
off (results do not depend on a reset). The ``SB_MAC16``'s clock enable is always on (the array never
stalls); the ``MULT18X18D``'s is ``ce`` (default on): its input and output registers load only while ``ce``
is high, as two stages of a pipeline that stalls (the requant unit's partial products).

``primitive`` chooses the implementation: True instantiates the primitive (an Amaranth ``Instance``;
simulators need a model of it: yosys' ``ice40/cells_sim.v`` for ``SB_MAC16``, ``sim/mult18x18d_sim.v`` for
``MULT18X18D``, of which yosys ships only a black box), False is the behavioural model (the same two
registers around ``*``), ``"auto"`` instantiates when the elaborating platform is of the primitive's
family (the Amaranth simulator and the simulation Verilog elaborate without a platform).
"""
from amaranth import *
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["LATENCY", "Mult18x18", "Mac16Dual8x8", "platform_family", "registered_product"]

LATENCY = 2


def platform_family(platform):
    """``"ice40"``, ``"ecp5"`` or None (no platform, or a family without these primitives)."""
    family = str(getattr(platform, "family", "") or "").lower()
    return family if family in ("ice40", "ecp5") else None


def _check(primitive):
    if primitive not in (True, False, "auto"):
        raise ValueError(f"primitive must be True, False or \"auto\", not {primitive!r}")
    return primitive


def _instantiate(primitive, platform, family):
    return primitive is True or (primitive == "auto" and platform_family(platform) == family)


def _registered_products(m, products, ce=1):
    """The behavioural model of both primitives: for each ``(a, b, p)``, ``a`` and ``b`` into input
    registers, their product into the output register ``p`` (latency 2), all loading while ``ce``."""
    for a, b, p in products:
        a_r, b_r = Signal.like(a, name=f"{p.name}_a"), Signal.like(b, name=f"{p.name}_b")
        with m.If(ce):
            m.d.sync += [a_r.eq(a), b_r.eq(b), p.eq(a_r * b_r)]


def _fits_18(value):
    shape = Value.cast(value).shape()
    return shape.width <= (18 if shape.signed else 17)


def registered_product(m, a, b, name, ce=1):
    """``a * b`` (its exact shape) ``LATENCY`` cycles after ``a`` and ``b``, through an input and an output
    register that load while ``ce``: a :class:`Mult18x18` (the ``MULT18X18D`` on an ECP5) when both
    operands fit its signed 18-bit inputs, else the same two registers around an inferred multiply."""
    shape = (a * b).shape()
    result = Signal(shape, name=name)
    if _fits_18(a) and _fits_18(b):
        m.submodules[name] = mult = Mult18x18()
        m.d.comb += [mult.a.eq(a), mult.b.eq(b), mult.ce.eq(ce), result.eq(mult.p[:shape.width])]
    else:
        _registered_products(m, [(a, b, result)], ce)
    return result


class Mult18x18(wiring.Component):
    """18 x 18 signed multiplier with input and output registers (ECP5 ``MULT18X18D``); latency 2, clock
    enable ``ce``."""
    a: In(signed(18))
    b: In(signed(18))
    ce: In(1, init=1)
    p: Out(signed(36))

    def __init__(self, primitive="auto"):
        self.primitive = _check(primitive)
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        if _instantiate(self.primitive, platform, "ecp5"):
            ports = {f"i_A{i}": self.a[i] for i in range(18)}
            ports.update({f"i_B{i}": self.b[i] for i in range(18)})
            ports.update({f"i_C{i}": 0 for i in range(18)})
            ports.update({f"o_P{i}": self.p[i] for i in range(36)})
            registers = {f"p_REG_{reg}_{what}": value for reg in ("INPUTA", "INPUTB", "OUTPUT")
                         for what, value in (("CLK", "CLK0"), ("CE", "CE0"), ("RST", "RST0"))}
            m.submodules.mult = Instance(
                "MULT18X18D", **registers, p_REG_PIPELINE_CLK="NONE", p_REG_INPUTC_CLK="NONE", p_GSR="DISABLED",
                p_RESETMODE="SYNC", p_SOURCEB_MODE="B_SHIFT", p_MULT_BYPASS="DISABLED", p_CAS_MATCH_REG="FALSE",
                i_SIGNEDA=1, i_SIGNEDB=1, i_SOURCEA=0, i_SOURCEB=0,
                i_CLK0=ClockSignal(), i_CE0=self.ce, i_RST0=0, i_CLK1=0, i_CE1=0, i_RST1=0, i_CLK2=0, i_CE2=0, i_RST2=0,
                i_CLK3=0, i_CE3=0, i_RST3=0, **ports)
        else:
            _registered_products(m, [(self.a, self.b, self.p)], self.ce)
        return m


class Mac16Dual8x8(wiring.Component):
    """Two signed 8 x 8 multipliers with input and product registers (iCE40 ``SB_MAC16``, ``MODE_8x8``);
    latency 2."""
    a_top: In(signed(8))
    b_top: In(signed(8))
    a_bot: In(signed(8))
    b_bot: In(signed(8))
    top: Out(signed(16))
    bot: Out(signed(16))

    def __init__(self, primitive="auto"):
        self.primitive = _check(primitive)
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        if _instantiate(self.primitive, platform, "ice40"):
            out = Signal(32)
            one = C(1, 1)
            m.submodules.mac = Instance(
                "SB_MAC16", p_NEG_TRIGGER=C(0, 1), p_A_REG=one, p_B_REG=one, p_C_REG=C(0, 1), p_D_REG=C(0, 1),
                p_TOP_8x8_MULT_REG=one, p_BOT_8x8_MULT_REG=one, p_PIPELINE_16x16_MULT_REG1=C(0, 1),
                p_PIPELINE_16x16_MULT_REG2=C(0, 1), p_TOPOUTPUT_SELECT=C(2, 2), p_TOPADDSUB_LOWERINPUT=C(0, 2),
                p_TOPADDSUB_UPPERINPUT=C(0, 1), p_TOPADDSUB_CARRYSELECT=C(0, 2), p_BOTOUTPUT_SELECT=C(2, 2),
                p_BOTADDSUB_LOWERINPUT=C(0, 2), p_BOTADDSUB_UPPERINPUT=C(0, 1), p_BOTADDSUB_CARRYSELECT=C(0, 2),
                p_MODE_8x8=one, p_A_SIGNED=one, p_B_SIGNED=one,
                i_CLK=ClockSignal(), i_CE=1, i_A=Cat(self.a_bot, self.a_top), i_B=Cat(self.b_bot, self.b_top),
                i_C=C(0, 16), i_D=C(0, 16), i_AHOLD=0, i_BHOLD=0, i_CHOLD=0, i_DHOLD=0, i_IRSTTOP=0, i_IRSTBOT=0,
                i_ORSTTOP=0, i_ORSTBOT=0, i_OLOADTOP=0, i_OLOADBOT=0, i_ADDSUBTOP=0, i_ADDSUBBOT=0,
                i_OHOLDTOP=0, i_OHOLDBOT=0, i_CI=0, i_ACCUMCI=0, i_SIGNEXTIN=0, o_O=out)
            m.d.comb += [self.bot.eq(out[:16]), self.top.eq(out[16:])]
        else:
            _registered_products(m, [(self.a_top, self.b_top, self.top), (self.a_bot, self.b_bot, self.bot)])
        return m
