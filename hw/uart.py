"""A small 8N1 UART: one transmitter and one receiver, both clocked by ``sync``.

Line format: idle high; a start bit (low), 8 data bits least significant first, one stop bit (high).
Every bit lasts ``divisor`` clock cycles (``divisor = clock frequency / baud rate``, at least 4).

The receiver synchronises ``rx`` with two flip-flops, waits half a bit after a falling edge, checks the
start bit is still low (else it was a glitch) and samples the data and stop bits in the middle of each bit,
so it tolerates a baud rate error of a few percent. A byte whose stop bit is low is dropped and pulses
``framing_error``. Received bytes leave on the ``data`` stream; a byte that arrives while the previous one
is still waiting there is dropped and pulses ``overrun`` (the host bridge drains the stream at once, so
this only happens when something upstream is broken).
"""
from amaranth import *
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

__all__ = ["UartTx", "UartRx", "check_divisor"]


def check_divisor(divisor) -> int:
    if not isinstance(divisor, int) or divisor < 4:
        raise ValueError(f"divisor must be an integer >= 4 (clock cycles per bit), not {divisor!r}")
    return divisor


class UartTx(wiring.Component):
    """UART transmitter: bytes taken from ``data`` are sent on ``tx``, back to back when available."""

    def __init__(self, divisor):
        self.divisor = check_divisor(divisor)
        super().__init__({"data": In(stream.Signature(8)), "tx": Out(1, init=1)})

    def elaborate(self, platform):
        m = Module()
        shift = Signal(10, init=0x3FF)          # stop bit, 8 data bits, start bit (sent LSB first)
        bits = Signal(range(11))                # bits left to send
        timer = Signal(range(self.divisor))
        m.d.comb += [self.tx.eq(shift[0]), self.data.ready.eq(bits == 0)]
        with m.If(self.data.valid & self.data.ready):
            m.d.sync += [shift.eq(Cat(C(0, 1), self.data.payload, C(1, 1))), bits.eq(10),
                         timer.eq(self.divisor - 1)]
        with m.Elif(bits != 0):
            with m.If(timer == 0):
                m.d.sync += [shift.eq(Cat(shift[1:], C(1, 1))), bits.eq(bits - 1), timer.eq(self.divisor - 1)]
            with m.Else():
                m.d.sync += timer.eq(timer - 1)
        return m


class UartRx(wiring.Component):
    """UART receiver: bytes from ``rx`` leave on ``data``; see the module docstring for errors."""

    def __init__(self, divisor):
        self.divisor = check_divisor(divisor)
        super().__init__({"rx": In(1, init=1), "data": Out(stream.Signature(8)),
                          "framing_error": Out(1), "overrun": Out(1)})

    def elaborate(self, platform):
        m = Module()
        rx = Signal(init=1)
        m.submodules.sync = FFSynchronizer(self.rx, rx, init=1)
        timer = Signal(range(self.divisor))
        bits = Signal(range(10))
        shift = Signal(8)
        with m.If(self.data.ready):
            m.d.sync += self.data.valid.eq(0)
        m.d.sync += [self.framing_error.eq(0), self.overrun.eq(0)]
        with m.FSM():
            with m.State("IDLE"):
                with m.If(~rx):
                    m.d.sync += timer.eq(self.divisor // 2 - 1)
                    m.next = "START"
            with m.State("START"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Elif(rx):                     # a glitch, not a start bit
                    m.next = "IDLE"
                with m.Else():
                    m.d.sync += [timer.eq(self.divisor - 1), bits.eq(9)]
                    m.next = "BITS"
            with m.State("BITS"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Elif(bits != 1):
                    m.d.sync += [shift.eq(Cat(shift[1:], rx)), bits.eq(bits - 1), timer.eq(self.divisor - 1)]
                with m.Else():                       # the middle of the stop bit
                    with m.If(~rx):
                        m.d.sync += self.framing_error.eq(1)
                    with m.Elif(self.data.valid & ~self.data.ready):
                        m.d.sync += self.overrun.eq(1)
                    with m.Else():
                        m.d.sync += [self.data.payload.eq(shift), self.data.valid.eq(1)]
                    m.next = "IDLE"
        return m
