"""A skid buffer: a two-entry stream register that cuts every combinational path through a handshake."""
from amaranth import *
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["SkidBuffer"]


class SkidBuffer(wiring.Component):
    """Passes a stream of ``shape`` payloads through at full rate, one cycle later.

    ``i.ready`` and ``o.valid`` are registers and ``o.payload`` is one of two registers, so neither
    side's handshake logic reaches the other's (FPGA timing across module boundaries). It is a two-entry
    FIFO: the second entry catches the item that ``i`` delivers in the cycle ``o`` stalls, because
    ``i.ready`` cannot drop in that cycle. An entry is written only from the ``i`` side, so ``o.ready``
    (an arbiter's grant, say) drives three flip-flops, not the enables of every payload bit.
    """

    def __init__(self, shape):
        super().__init__({"i": In(stream.Signature(shape)), "o": Out(stream.Signature(shape))})

    def elaborate(self, platform):
        m = Module()
        # the payload registers have no reset (o.valid says whether they hold an item): the soft clear's
        # reset net reaches only the handshake's flip-flops
        entries = [Signal.like(self.i.payload, name=f"entry{k}", reset_less=True) for k in range(2)]
        head, tail, full = Signal(), Signal(), Signal()    # entry to read, entry to write, both hold items
        push, pop = self.i.valid & self.i.ready, self.o.valid & self.o.ready
        m.d.comb += [self.i.ready.eq(~full), self.o.payload.eq(Mux(head, entries[1], entries[0]))]
        with m.If(push):
            m.d.sync += tail.eq(~tail)
            for k, entry in enumerate(entries):
                with m.If(tail == k):
                    m.d.sync += entry.eq(self.i.payload)
        with m.If(pop):
            m.d.sync += head.eq(~head)
        with m.If(push & ~pop):
            m.d.sync += [self.o.valid.eq(1), full.eq(self.o.valid)]
        with m.Elif(pop & ~push):
            m.d.sync += [self.o.valid.eq(full), full.eq(0)]
        return m
