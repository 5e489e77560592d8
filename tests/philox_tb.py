"""cocotb testbenches for PhiloxCore (``test_core``) and PhiloxStream (``test_stream``).

Run from tests/test_philox.py. Both drive and sample at the falling clock edge (after a 1 ns settle),
so the handshakes seen are exactly those the next rising edge acts on, on any simulator. Valid gaps
and ready backpressure come from TRIDSA_SEED (printed); the golden model is tridsa.sw.philox.
"""
import os
import random

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, Timer

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


async def _drive(dut, rng, in_stream, out_stream, items, encode, decode, expected_beats, max_cycles):
    """Send ``items`` (held until taken, random gaps) while taking beats with random ready."""
    in_valid, in_ready, in_payload = in_stream
    out_valid, out_ready, out_payload = out_stream
    pending, current, got = list(items), None, []
    for _ in range(max_cycles):
        if current is None and pending and rng.random() < 0.6:
            current = pending.pop(0)
            in_payload.value = encode(current)
        in_valid.value = int(current is not None)
        out_ready.value = int(rng.random() < 0.6)
        await Timer(1, unit="ns")
        if current is not None and int(in_ready.value):
            current = None
        if int(out_valid.value) and int(out_ready.value):
            got.append(decode(out_payload.value.to_unsigned()))
        if len(got) == expected_beats and current is None and not pending:
            return got
        await FallingEdge(dut.clk)
    raise AssertionError(f"timeout: {len(got)} of {expected_beats} beats after {max_cycles} cycles")


@cocotb.test()
async def test_core(dut):
    """Random counters and keys (with KAT and word-crossing counters) against philox4x32_10."""
    rng = _rng(dut)
    await _reset(dut, dut.i__valid)
    items = [(c, (0xA4093822, 0x299F31D0) if i == 5 else (rng.randrange(1 << 32), rng.randrange(1 << 32)))
             for i, c in enumerate(EDGE_COUNTERS)]
    items += [(tuple(rng.choice([rng.randrange(1 << 32), 0, MASK]) for _ in range(4)),
               (rng.randrange(1 << 32), rng.randrange(1 << 32))) for _ in range(150)]
    got = await _drive(dut, rng, (dut.i__valid, dut.i__ready, dut.i__payload),
                       (dut.o__valid, dut.o__ready, dut.o__payload), items,
                       lambda it: _pack(it[0]) | _pack(it[1]) << 128, lambda v: _unpack(v, 4),
                       len(items), 10000)
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

    got = await _drive(dut, rng, (dut.cmd__valid, dut.cmd__ready, dut.cmd__payload),
                       (dut.o__valid, dut.o__ready, dut.o__payload), commands, encode, decode,
                       len(beats), 10000)
    for i, (out, expected) in enumerate(zip(got, beats)):
        assert out == expected, f"beat {i}: got {out}, expected {expected}"
