"""cocotb testbenches for PhiloxCore (``test_core``) and PhiloxStream (``test_stream``).

Run from tests/test_philox.py. The streams are driven by :func:`tridsa.sim.cocotb_streams.exchange`
(random valid gaps and ready backpressure from TRIDSA_SEED, printed); the golden model is
tridsa.sw.philox.
"""
import os
import random

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge

from tridsa.sim.cocotb_streams import Stream, exchange
from tridsa.sw.philox import counter_range, philox4x32_10

MASK = 0xFFFFFFFF
EDGE_COUNTERS = [
    (0xFFFFFFFF, 0, 0, 0),
    (0xFFFFFFFE, 0xFFFFFFFF, 7, 0),
    (0xFFFFFFFD, 0xFFFFFFFF, 0xFFFFFFFF, 1),
    (0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF),
    (0, 0, 0, 0),
    (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
]


def _pack(words, width=32):
    return sum(int(w) << (width * i) for i, w in enumerate(words))


def _unpack(value, count, width=32):
    return tuple((value >> (width * i)) & ((1 << width) - 1) for i in range(count))


def _rng(dut):
    seed = int(os.environ.get("TRIDSA_SEED", "1"))
    dut._log.info(f"TRIDSA_SEED={seed}")
    return random.Random(seed)


async def _reset(dut, valid):
    Clock(dut.clk, 10, unit="ns", impl="gpi").start()
    dut.rst.value = 1
    valid.value = 0
    for _ in range(2):
        await FallingEdge(dut.clk)
    dut.rst.value = 0


@cocotb.test()
async def test_core(dut):
    """Random counters and keys (with KAT and word-crossing counters) against philox4x32_10."""
    rng = _rng(dut)
    await _reset(dut, dut.i__valid)
    items = [(c, (0xA4093822, 0x299F31D0) if i == 5 else (rng.randrange(1 << 32), rng.randrange(1 << 32)))
             for i, c in enumerate(EDGE_COUNTERS)]
    items += [(tuple(rng.choice([rng.randrange(1 << 32), 0, MASK]) for _ in range(4)),
               (rng.randrange(1 << 32), rng.randrange(1 << 32))) for _ in range(150)]
    got = await exchange(dut, Stream(dut, "i"), Stream(dut, "o"), items,
                         lambda it: _pack(it[0]) | _pack(it[1]) << 128, lambda v: _unpack(v, 4), len(items), rng=rng)
    for (counter, key), out in zip(items, got):
        expected = tuple(int(x) for x in philox4x32_10(np.array([counter], dtype=np.uint32), key)[0])
        assert out == expected, f"counter={counter} key={key}: got {out}, expected {expected}"
    assert got[5] == (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)  # Random123 KAT


@cocotb.test()
async def test_stream(dut):
    """Commands (key, counter, count) produce the block stream, lanes blocks per beat, with last."""
    rng = _rng(dut)
    lanes = int(os.environ["TRIDSA_LANES"])
    await _reset(dut, dut.cmd__valid)
    commands = [(c, (rng.randrange(1 << 32), rng.randrange(1 << 32)), rng.randrange(0, 4 * lanes + 3))
                for c in EDGE_COUNTERS]
    commands.append(((MASK, MASK, 0, 0), (1, 2), 25))
    beats = []
    for counter, key, count in commands:
        nbeats = -(-count // lanes)
        for b in range(nbeats):
            blocks = philox4x32_10(counter_range(counter, b * lanes, lanes), key)
            beats.append((tuple(tuple(int(x) for x in blk) for blk in blocks), b == nbeats - 1))

    def encode(cmd):
        counter, key, count = cmd
        return _pack(key) | _pack(counter) << 64 | count << 192

    def decode(value):
        blocks = tuple(_unpack(blk, 4) for blk in _unpack(value, lanes, 128))
        return blocks, bool((value >> (128 * lanes)) & 1)

    got = await exchange(dut, Stream(dut, "cmd"), Stream(dut, "o"), commands, encode, decode, len(beats), rng=rng)
    for i, (out, expected) in enumerate(zip(got, beats)):
        assert out == expected, f"beat {i}: got {out}, expected {expected}"
