"""Top level: command queue -> dispatcher -> engines, the shared memory and the status register.

Host protocol: push instruction words into ``cmd`` (a stream; the queue holds ``Config.queue_depth``).
The dispatcher runs them in order, one at a time. ``HALT`` or the first error raises ``halted``;
``error`` then holds the error code (:data:`tridsa.sw.isa.ERRORS`) and ``error_pc`` the index of the
failing instruction. After halting, the dispatcher keeps draining ``cmd`` so a host never blocks.
Counters count from the first instruction popped until ``halted``.
"""
from amaranth import *
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from ..sw import isa
from .gemm import GemmEngine
from .memory import MemoryModel

__all__ = ["Top", "COUNTERS"]

COUNTER_BITS = 48
COUNTERS = ("cycles", "busy_gemm", "feed_gemm", "retired")


class Top(wiring.Component):
    """The accelerator with its memory.

    Parameters
    ----------
    config:
        The :class:`tridsa.Config`.
    storage:
        ``"amaranth"`` or ``"verilog"``, see :class:`tridsa.hw.memory.MemoryModel`.
    init:
        Initial memory words (ints), for ``storage="amaranth"``.
    """

    def __init__(self, config, storage="amaranth", init=()):
        self.config = config
        self.memory = MemoryModel(config, storage=storage, init=init)
        super().__init__({
            "cmd": In(stream.Signature(isa.INSTR_BITS)),
            "halted": Out(1),
            "error": Out(8),
            "error_pc": Out(32),
            "counters": Out(data.StructLayout({name: COUNTER_BITS for name in COUNTERS})),
            "dump": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        m.submodules.memory = self.memory
        m.submodules.queue = queue = fifo.SyncFIFOBuffered(width=isa.INSTR_BITS, depth=cfg.queue_depth)
        m.submodules.gemm = gemm = GemmEngine(cfg)
        m.d.comb += self.memory.dump.eq(self.dump)
        wiring.connect(m, gemm.mem, self.memory.port)

        m.d.comb += [queue.w_data.eq(self.cmd.payload), queue.w_en.eq(self.cmd.valid),
                     self.cmd.ready.eq(queue.w_rdy)]
        word = queue.r_data
        opcode = word[:isa.OPCODE_BITS]
        pc = Signal(32)
        started = Signal()
        counters = self.counters
        m.d.comb += gemm.instr.eq(word)

        with m.FSM():
            with m.State("FETCH"):
                with m.If(queue.r_rdy):
                    m.d.comb += queue.r_en.eq(1)
                    m.d.sync += started.eq(1)
                    with m.Switch(opcode):
                        with m.Case(isa.OPCODES["NOP"].code):
                            m.d.sync += [pc.eq(pc + 1), counters.retired.eq(counters.retired + 1)]
                        with m.Case(isa.OPCODES["HALT"].code):
                            m.next = "HALTED"
                        with m.Case(isa.OPCODES["GEMM"].code):
                            m.d.comb += gemm.start.eq(1)
                            m.next = "GEMM"
                        with m.Default():
                            m.d.sync += [self.error.eq(isa.ERRORS["ILLEGAL_OPCODE"]), self.error_pc.eq(pc)]
                            m.next = "HALTED"
            with m.State("GEMM"):
                with m.If(gemm.done):
                    with m.If(gemm.error != 0):
                        m.d.sync += [self.error.eq(gemm.error), self.error_pc.eq(pc)]
                        m.next = "HALTED"
                    with m.Else():
                        m.d.sync += [pc.eq(pc + 1), counters.retired.eq(counters.retired + 1)]
                        m.next = "FETCH"
            with m.State("HALTED"):
                m.d.comb += [self.halted.eq(1), queue.r_en.eq(1)]

        with m.If(started & ~self.halted):
            m.d.sync += counters.cycles.eq(counters.cycles + 1)
        with m.If(gemm.busy):
            m.d.sync += counters.busy_gemm.eq(counters.busy_gemm + 1)
        with m.If(gemm.feeding):
            m.d.sync += counters.feed_gemm.eq(counters.feed_gemm + 1)
        return m
