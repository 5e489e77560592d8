# amaranth: UnusedElaboratable=no
"""The UART (hw/uart.py) and the protocol checksum, in Amaranth's simulator (small components, fast)."""
import random

import pytest
from amaranth import Module, Signal
from amaranth.sim import Simulator

from tridsa.hw.host_bridge import crc8_next
from tridsa.hw.uart import UartRx, UartTx
from tridsa.spec.host_link import crc8


def test_crc8_check_value():
    # CRC-8/SMBUS catalogue check value
    assert crc8(b"123456789") == 0xF4
    assert crc8(b"") == 0


def test_crc8_hardware_matches_software(seed):
    rng = random.Random(seed)
    crc, byte = Signal(8), Signal(8)
    m = Module()
    out = Signal(8)
    m.d.comb += out.eq(crc8_next(crc, byte))
    sim = Simulator(m)
    cases = [(rng.randrange(256), rng.randrange(256)) for _ in range(200)] + [(0, 0), (255, 255), (0x80, 0)]

    async def tb(ctx):
        for c, b in cases:
            ctx.set(crc, c)
            ctx.set(byte, b)
            assert ctx.get(out) == crc8(bytes([b]), c), (c, b)

    sim.add_testbench(tb)
    sim.run()


def _line_bits(value, stop=1):
    return [0] + [(value >> i) & 1 for i in range(8)] + [stop]


def test_bad_divisor():
    with pytest.raises(ValueError, match="divisor"):
        UartTx(3)
    with pytest.raises(ValueError, match="divisor"):
        UartRx(4.5)


@pytest.mark.parametrize("tx_div,rx_div", [(8, 8), (4, 4), (33, 34), (34, 33)])
def test_loopback_random_gaps(seed, tx_div, rx_div):
    """Bytes through UartTx -> line -> UartRx with random source gaps and sink backpressure.

    (33, 34) and (34, 33) are a 3 % baud rate mismatch. The sink is slow but never slower than the line,
    so no byte may be lost.
    """
    rng = random.Random(seed)
    data = [rng.randrange(256) for _ in range(40)]
    m = Module()
    m.submodules.tx = tx = UartTx(tx_div)
    m.submodules.rx = rx = UartRx(rx_div)
    m.d.comb += rx.rx.eq(tx.tx)
    sim = Simulator(m)
    sim.add_clock(1e-8)
    got, errors = [], []

    async def source(ctx):
        for value in data:
            ctx.set(tx.data.valid, 0)
            await ctx.tick().repeat(rng.choice([0, 0, 1, 5, 3 * tx_div]) + 1)
            ctx.set(tx.data.payload, value)
            ctx.set(tx.data.valid, 1)
            await ctx.tick().until(tx.data.ready)
        ctx.set(tx.data.valid, 0)

    async def sink(ctx):
        while len(got) < len(data):
            ctx.set(rx.data.ready, rng.random() < 0.3)
            await ctx.tick()
            if ctx.get(rx.framing_error) or ctx.get(rx.overrun):
                errors.append("error")
        # nothing more may arrive
        ctx.set(rx.data.ready, 1)
        await ctx.tick().repeat(12 * rx_div)

    async def monitor(ctx):
        async for _, _, valid, ready, payload in ctx.tick().sample(rx.data.valid, rx.data.ready, rx.data.payload):
            if valid and ready:
                got.append(payload)

    sim.add_testbench(source)
    sim.add_testbench(sink)
    sim.add_testbench(monitor, background=True)
    sim.run()
    assert got == data
    assert not errors


def test_rx_framing_error_glitch_and_overrun():
    """A low stop bit drops the byte; a short low pulse is no start bit; an unread byte is not overwritten."""
    div = 8
    rx = UartRx(div)
    sim = Simulator(rx)
    sim.add_clock(1e-8)
    seen = {"framing": 0, "overrun": 0, "bytes": []}

    async def drive(ctx):
        ctx.set(rx.rx, 1)
        await ctx.tick().repeat(20)
        for level in _line_bits(0x3C, stop=0):            # framing error
            ctx.set(rx.rx, level)
            await ctx.tick().repeat(div)
        ctx.set(rx.rx, 1)
        await ctx.tick().repeat(4 * div)
        ctx.set(rx.rx, 0)                                  # glitch: 2 cycles low
        await ctx.tick().repeat(2)
        ctx.set(rx.rx, 1)
        await ctx.tick().repeat(4 * div)
        for value in (0xA5, 0x11):                          # ready stays low: the second one overruns
            for level in _line_bits(value):
                ctx.set(rx.rx, level)
                await ctx.tick().repeat(div)
        await ctx.tick().repeat(2 * div)
        assert ctx.get(rx.data.valid) and ctx.get(rx.data.payload) == 0xA5
        ctx.set(rx.data.ready, 1)
        await ctx.tick()
        ctx.set(rx.data.ready, 0)
        await ctx.tick().repeat(2 * div)
        assert not ctx.get(rx.data.valid)

    async def watch(ctx):
        async for _, _, framing, overrun in ctx.tick().sample(rx.framing_error, rx.overrun):
            seen["framing"] += framing
            seen["overrun"] += overrun

    sim.add_testbench(drive)
    sim.add_testbench(watch, background=True)
    sim.run()
    assert seen["framing"] == 1
    assert seen["overrun"] == 1
