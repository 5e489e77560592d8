"""Stream registers for FPGA timing: a skid buffer (two entries, cuts every combinational path through a
handshake, one cycle of latency) and a ready register (one entry, cuts only the ready path, no latency)."""
from amaranth import *
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["SkidBuffer", "ReadyRegister"]


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


class ReadyRegister(wiring.Component):
    """Cuts the ``ready`` path of a stream and nothing else: ``i.ready`` is a register, and ``o`` sees
    ``i``'s items in the same cycle (no latency) while the one entry is empty.

    When ``o`` stalls an item ``i`` offers, the entry keeps it (``i.ready`` was high: it was taken) and
    ``i.ready`` drops in the next cycle; ``o`` then gets the entry first. ``o`` sees every item in the
    same cycle as without the register; ``i`` may hand over one item earlier (into the entry) and then
    waits a cycle longer. The entry loads whenever it is empty, so its enable is a register too.
    """

    def __init__(self, shape):
        super().__init__({"i": In(stream.Signature(shape)), "o": Out(stream.Signature(shape))})

    def elaborate(self, platform):
        m = Module()
        entry = Signal.like(self.i.payload, name="entry", reset_less=True)    # ``full`` says if it holds one
        full = Signal()
        m.d.comb += [self.i.ready.eq(~full), self.o.valid.eq(full | self.i.valid),
                     self.o.payload.eq(Mux(full, entry, self.i.payload))]
        with m.If(~full):
            m.d.sync += entry.eq(self.i.payload)
        m.d.sync += full.eq(self.o.valid & ~self.o.ready)
        return m
