"""A skid buffer: a two-entry stream register that cuts every combinational path through a handshake."""
from amaranth import *
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["SkidBuffer"]


class SkidBuffer(wiring.Component):
    """Passes a stream of ``shape`` payloads through at full rate, one cycle later.

    ``i.ready``, ``o.valid`` and ``o.payload`` are registers, so neither side's handshake logic reaches
    the other's (FPGA timing across module boundaries). The second entry (``skid``) catches the item that
    ``i`` delivers in the cycle ``o`` stalls, because ``i.ready`` cannot drop in that cycle.
    """

    def __init__(self, shape):
        super().__init__({"i": In(stream.Signature(shape)), "o": Out(stream.Signature(shape))})

    def elaborate(self, platform):
        m = Module()
        skid, skid_valid = Signal.like(self.i.payload), Signal()
        m.d.comb += self.i.ready.eq(~skid_valid)
        with m.If(~self.o.valid | self.o.ready):
            with m.If(skid_valid):                  # i.ready is low: nothing new arrives this cycle
                m.d.sync += [self.o.payload.eq(skid), skid_valid.eq(0)]
            with m.Else():
                m.d.sync += [self.o.valid.eq(self.i.valid), self.o.payload.eq(self.i.payload)]
        with m.Elif(self.i.valid & self.i.ready):
            m.d.sync += [skid.eq(self.i.payload), skid_valid.eq(1)]
        return m
