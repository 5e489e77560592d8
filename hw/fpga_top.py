"""The FPGA top level: the accelerator behind a UART host bridge, with a PLL clock, for one board.

Structure::

    uart rx pin -> UartRx -> HostBridge -> Top.cmd / Top.host (memory) / status, counters
    uart tx pin <- UartTx <-/        \\-> clear: synchronous reset of the Top only

:class:`FpgaCore` is everything between the two UART pins; the ``uart-sim`` backend simulates exactly this
component. :class:`FpgaTop` adds what a board needs: the PLL that makes the ``sync`` clock from the board
oscillator, a reset held until the PLL locks, and the UART pins from the amaranth-boards platform.

Soft clear: the Top runs in a domain ``top`` (the ``sync`` clock) whose reset is the bridge's ``clear``
or the board's reset, one register and (ECP5) a global buffer, so CLEAR resets the command queue,
dispatcher, engines, status and counters in one cycle without touching the bridge (which must keep
talking) or the memory contents (memories have no reset).

The Top's memory is its ``MemoryModel(storage="amaranth")``: yosys maps it to block RAM (iCE40 EBR,
ECP5 DP16KD).
"""
from __future__ import annotations

import dataclasses

from amaranth import *
from amaranth.lib import io, wiring
from amaranth.lib.cdc import ResetSynchronizer
from amaranth.lib.wiring import In, Out

from ..spec.config import Config
from .dsp import platform_family
from .host_bridge import HostBridge
from .skid import SkidBuffer
from .top import Top
from .uart import UartRx, UartTx, check_divisor

__all__ = ["FpgaCore", "FpgaTop", "Board", "BOARDS", "ice40_pll", "ecp5_pll"]


class FpgaCore(wiring.Component):
    """UART pins <-> host bridge <-> accelerator Top, in the ``sync`` domain.

    Parameters
    ----------
    config:
        The accelerator :class:`tridsa.Config`.
    divisor:
        Clock cycles per UART bit (clock frequency / baud rate).
    timeout:
        Idle clock cycles that end an incomplete request frame (see :class:`HostBridge`).
    """

    def __init__(self, config, divisor, timeout):
        self.config, self.divisor, self.timeout = config, check_divisor(divisor), timeout
        self.top = Top(config, storage="amaranth")
        self.bridge = HostBridge(config, self.top.counter_names, timeout)
        super().__init__({"rx": In(1, init=1), "tx": Out(1, init=1)})

    def elaborate(self, platform):
        m = Module()
        top, bridge = self.top, self.bridge
        m.submodules.uart_rx = uart_rx = UartRx(self.divisor)
        m.submodules.uart_tx = uart_tx = UartTx(self.divisor)
        m.submodules.bridge = bridge
        # The Top runs in its own domain: the ``sync`` clock, and a reset that is CLEAR or the board's reset,
        # registered (``init=1``: set while ``sync`` resets) one cycle after the bridge decodes CLEAR. On the
        # ECP5 a DCCA puts that register's output on a global network: it reaches the reset of every
        # register of the Top (~3,000 slices) with a clock net's delay instead of fabric routing.
        top_reset, reset_net = Signal(init=1), Signal()
        m.d.sync += top_reset.eq(bridge.clear)
        if platform_family(platform) == "ecp5":
            m.submodules.reset_buffer = Instance("DCCA", i_CLKI=top_reset, i_CE=Const(1), o_CLKO=reset_net)
        else:
            m.d.comb += reset_net.eq(top_reset)
        m.domains.top = top_domain = ClockDomain("top", local=True)
        m.d.comb += [top_domain.clk.eq(ClockSignal("sync")), top_domain.rst.eq(reset_net)]
        m.submodules.top = DomainRenamer("top")(top)
        m.d.comb += [uart_rx.rx.eq(self.rx), self.tx.eq(uart_tx.tx)]
        # A received byte reaches the bridge from registers: its handshake enables the frame register
        m.submodules.rx_skid = rx_skid = SkidBuffer(8)
        wiring.connect(m, uart_rx.data, rx_skid.i)
        wiring.connect(m, rx_skid.o, bridge.rx)
        # The reply byte (a multiplexer over the status and counters) ends at a register
        m.submodules.tx_skid = tx_skid = SkidBuffer(8)
        wiring.connect(m, bridge.tx, tx_skid.i)
        wiring.connect(m, tx_skid.o, uart_tx.data)
        wiring.connect(m, bridge.cmd, top.cmd)
        # The Top's host port has a (constant-ready) resp.ready for Verilog; the bridge's has none.
        m.d.comb += [top.host.req.valid.eq(bridge.mem.req.valid), top.host.req.payload.eq(bridge.mem.req.payload),
                     bridge.mem.req.ready.eq(top.host.req.ready), top.host.resp.ready.eq(1),
                     bridge.mem.resp.valid.eq(top.host.resp.valid),
                     bridge.mem.resp.payload.eq(top.host.resp.payload),
                     bridge.halted.eq(top.halted), bridge.error.eq(top.error), bridge.error_pc.eq(top.error_pc),
                     bridge.counters.eq(top.counters), top.dump.eq(0)]
        return m


# -- PLLs ----------------------------------------------------------------------------------------
def ice40_pll(f_in: float, f_target: float) -> dict:
    """SB_PLL40 parameters (SIMPLE feedback) for the highest frequency <= ``f_target``.

    ``f_out = f_in * (DIVF + 1) / ((DIVR + 1) * 2**DIVQ)`` with the PFD in 10..133 MHz and the VCO in
    533..1066 MHz (iCE40 sysCLOCK PLL datasheet; the same rules as icestorm's ``icepll``).
    """
    best = None
    for divr in range(16):
        f_pfd = f_in / (divr + 1)
        if not 10e6 <= f_pfd <= 133e6:
            continue
        for divf in range(128):
            f_vco = f_pfd * (divf + 1)
            if not 533e6 <= f_vco <= 1066e6:
                continue
            for divq in range(1, 7):
                f_out = f_vco / 2 ** divq
                if f_out <= f_target and (best is None or f_out > best[0]):
                    best = (f_out, divr, divf, divq, f_pfd)
    if best is None:
        raise ValueError(f"no iCE40 PLL setting makes <= {f_target / 1e6} MHz from {f_in / 1e6} MHz")
    f_out, divr, divf, divq, f_pfd = best
    filter_range = next(i + 1 for i, limit in enumerate((17e6, 26e6, 44e6, 66e6, 101e6, float("inf")))
                        if f_pfd < limit)
    return {"frequency": f_out, "DIVR": divr, "DIVF": divf, "DIVQ": divq, "FILTER_RANGE": filter_range}


def ecp5_pll(f_in: float, f_target: float) -> dict:
    """EHXPLLL parameters (CLKOP feedback) for the highest frequency <= ``f_target``.

    ``f_out = f_in * CLKFB_DIV / CLKI_DIV``, the VCO ``f_out * CLKOP_DIV`` in 400..800 MHz and the PFD
    ``f_in / CLKI_DIV`` >= 3.125 MHz (the rules of prjtrellis' ``ecppll``).
    """
    best = None
    for clki in range(1, 129):
        if f_in / clki < 3.125e6:
            break
        for clkfb in range(1, 81):
            f_out = f_in * clkfb / clki
            if f_out > f_target:
                break
            for clkop in range(1, 129):
                if 400e6 <= f_out * clkop <= 800e6:
                    if best is None or f_out > best[0]:
                        best = (f_out, clki, clkfb, clkop)
                    break
    if best is None:
        raise ValueError(f"no ECP5 PLL setting makes <= {f_target / 1e6} MHz from {f_in / 1e6} MHz")
    f_out, clki, clkfb, clkop = best
    return {"frequency": f_out, "CLKI_DIV": clki, "CLKFB_DIV": clkfb, "CLKOP_DIV": clkop}


# -- boards --------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Board:
    """A supported board: its amaranth-boards platform, oscillator, target clock and default Config."""
    name: str
    family: str                 # "ice40" or "ecp5"
    platform: str               # "module:Class" in amaranth_boards
    clock: str                  # oscillator resource name
    f_in: float
    target: float               # requested accelerator clock (Hz)
    config: Config
    uart_pins: str              # FPGA pins of the board's USB UART (rx, tx), for docs
    dsp_blocks: int             # hard multiplier blocks of the device (SB_MAC16 / MULT18X18D)
    # nextpnr BEL names of the device's DSP sites, one tuple per row of DSP blocks (left to right); empty:
    # the placer chooses (sw/build.py dsp_placement)
    dsp_rows: tuple = ()

    def make_platform(self):
        """The amaranth-boards platform; programming tools (openFPGALoader, iceprog) are not required."""
        import importlib
        module, name = self.platform.split(":")
        cls = getattr(importlib.import_module(module), name)
        programmers = ("openFPGALoader", "iceprog")
        build_only = type(name, (cls,), {"required_tools": property(
            lambda self: [t for t in super(build_only, self).required_tools if t not in programmers])})
        return build_only()


BOARDS = {
    # iCE40 UP5K: 5,280 logic cells, 30 x 4 kbit EBR, 8 SB_MAC16. The compact GEMM engine (docs/fpga.md): an
    # 8 x 2 INT8 broadcast array on the 8 SB_MAC16 in dual 8 x 8 mode (16 MACs per cycle; signed B), the GEMM
    # engine only, no command queue, the serial requant unit, 4 KiB of memory in EBR (so 26-bit
    # accumulators), no accumulate mode, no overlap, 24-bit counters.
    "icebreaker": Board("icebreaker", "ice40", "amaranth_boards.icebreaker:ICEBreakerPlatform", "clk12", 12e6, 30e6,
                        Config(rows=8, cols=2, int4=False, mem_width=8, mem_depth=512, mem_latency=1,
                               queue_depth=0, engines=("gemm",), requant_lanes=1, requant_stages=0,
                               accumulate=False, pe_family="ice40", overlap=False, counter_bits=24,
                               gemm_engine="compact"),
                        "rx=6 tx=9", 8),
    # ECP5-85F: 84k LUT4, 208 DP16KD, 156 MULT18X18D. A 16 x 8 array with INT4, every PE on a MULT18X18D
    # (128 INT8 / 256 INT4 MACs per cycle), the GEMM engine only, 4 requant lanes: 148 of the 156 DSPs
    # (128 PEs, 4 per requant lane, 4 for the sequencer's setup arithmetic); no accumulate mode. The array's
    # rows in groups of 6 (the 52 MULT18X18D of one of the device's three DSP rows hold 6 rows of 8 PEs): a
    # register more on the operand links between groups.
    "ulx3s-85f": Board("ulx3s-85f", "ecp5", "amaranth_boards.ulx3s:ULX3S_85F_Platform", "clk25", 25e6, 125e6,
                       Config(rows=16, cols=8, int4=True, mem_width=32, mem_depth=2048, mem_latency=3,
                              queue_depth=4, engines=("gemm",), requant_lanes=4, accumulate=False,
                              pe_family="ecp5", row_group=6),
                       "rx=M1 tx=L4", 156,
                       # three rows of 13 DSP blocks (tile rows 10, 34, 58), 4 MULT18X18D in each block
                       tuple(tuple(f"X{x + dx}/Y{y}/MULT18_{dx}" for x in (4, 13, 22, 31, 40, 49, 58, 69, 78, 87, 96,
                                                                          105, 114) for dx in (0, 1, 4, 5))
                             for y in (10, 34, 58))),
}


class FpgaTop(Elaboratable):
    """The whole design for one board: PLL -> ``sync`` domain, :class:`FpgaCore` on the board's UART.

    Parameters
    ----------
    board:
        A :class:`Board` (or its name in :data:`BOARDS`).
    config:
        The accelerator Config (default: the board's).
    baud:
        UART baud rate.
    frequency:
        Requested clock (default: the board's target); the PLL makes the closest frequency not above it.
    timeout_ms:
        Idle time that ends an incomplete request frame.
    """

    def __init__(self, board, config=None, baud=115200, frequency=None, timeout_ms=50):
        if isinstance(board, str):
            if board not in BOARDS:
                raise ValueError(f"unknown board {board!r}: expected one of {', '.join(BOARDS)}")
            board = BOARDS[board]
        self.board = board
        self.config = config or board.config
        if not isinstance(self.config, Config):
            raise TypeError(f"config must be a tridsa.Config, got {type(self.config).__name__}")
        target = frequency or board.target
        self.pll = (ice40_pll if board.family == "ice40" else ecp5_pll)(board.f_in, target)
        self.frequency = self.pll["frequency"]
        if not isinstance(baud, int) or not 300 <= baud <= self.frequency / 4:
            raise ValueError(f"baud must be an integer in 300..{int(self.frequency / 4)}, not {baud!r}")
        self.baud = baud
        self.divisor = round(self.frequency / baud)
        self.timeout = int(self.frequency * timeout_ms / 1000)
        self.core = FpgaCore(self.config, self.divisor, self.timeout)

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = cd_sync = ClockDomain("sync")
        clk = cd_sync.clk                  # driven by the PLL; constrained under its own net name
        locked = Signal()
        p = self.pll
        if self.board.family == "ice40":
            pin = platform.request(self.board.clock, dir="-")
            m.submodules.pll = Instance(
                "SB_PLL40_PAD", p_FEEDBACK_PATH="SIMPLE", p_DIVR=p["DIVR"], p_DIVF=p["DIVF"], p_DIVQ=p["DIVQ"],
                p_FILTER_RANGE=p["FILTER_RANGE"], i_PACKAGEPIN=pin.io, i_RESETB=1, i_BYPASS=0,
                o_PLLOUTGLOBAL=clk, o_LOCK=locked)
        else:
            m.submodules.clk_buf = clk_buf = io.Buffer("i", platform.request(self.board.clock, dir="-"))
            clk_in = clk_buf.i
            m.submodules.pll = Instance(
                "EHXPLLL", a_FREQUENCY_PIN_CLKI=str(int(self.board.f_in / 1e6)),
                a_FREQUENCY_PIN_CLKOP=f"{self.frequency / 1e6:g}",
                p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
                p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA", p_CLKOP_ENABLE="ENABLED",
                p_CLKI_DIV=p["CLKI_DIV"], p_CLKFB_DIV=p["CLKFB_DIV"], p_CLKOP_DIV=p["CLKOP_DIV"],
                p_CLKOP_CPHASE=p["CLKOP_DIV"] // 2, p_CLKOP_FPHASE=0, p_FEEDBK_PATH="CLKOP",
                i_RST=0, i_STDBY=0, i_CLKI=clk_in, i_CLKFB=clk, o_CLKOP=clk, i_PHASESEL0=0, i_PHASESEL1=0,
                i_PHASEDIR=1, i_PHASESTEP=1, i_PHASELOADREG=1, i_PLLWAKESYNC=0, i_ENCLKOP=0, o_LOCK=locked)
        # No constraint on the PLL output: nextpnr derives it from the oscillator's constraint and the
        # PLL parameters (a constraint on the net would have to survive yosys' renaming).
        m.submodules.reset = ResetSynchronizer(~locked, domain="sync")
        uart = platform.request("uart", 0, dir="-")
        m.submodules.uart_rx_buf = rx_buf = io.Buffer("i", uart.rx)
        m.submodules.uart_tx_buf = tx_buf = io.Buffer("o", uart.tx)
        m.submodules.core = self.core
        m.d.comb += [self.core.rx.eq(rx_buf.i), tx_buf.o.eq(self.core.tx)]
        return m
