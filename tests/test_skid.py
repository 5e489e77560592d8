# amaranth: UnusedElaboratable=no
"""The skid buffer and the ready register (hw/skid.py) under random stalls on both sides, in Amaranth's simulator."""
import random

import pytest
from amaranth.sim import Simulator

from tridsa.hw.skid import ReadyRegister, SkidBuffer

STREAM_REGISTERS = pytest.mark.parametrize("cls", [SkidBuffer, ReadyRegister])


def _run(cls, seed, p_valid, p_ready, n=300):
    """Stream ``n`` random words through a ``cls``; return (words out, words in, state: cycles, cycles where
    i.ready changed combinationally with o.ready, cycles where an offered word was not on ``o`` at once)."""
    rng = random.Random(seed)
    dut = cls(16)
    words = [rng.randrange(1 << 16) for _ in range(n)]
    got, state = [], {"cycles": 0, "comb": 0, "late": 0}

    async def bench(ctx):
        sent = 0
        while len(got) < n:
            assert state["cycles"] < 20 * n, f"stuck: seed {seed}"
            offer = sent < n and rng.random() < p_valid
            ctx.set(dut.i.valid, offer)
            ctx.set(dut.i.payload, words[sent] if offer else rng.randrange(1 << 16))
            ctx.set(dut.o.ready, 0)
            ready_low = ctx.get(dut.i.ready)
            take = rng.random() < p_ready
            ctx.set(dut.o.ready, take)
            state["comb"] += ctx.get(dut.i.ready) != ready_low       # i.ready must not follow o.ready
            state["late"] += offer and ctx.get(dut.i.ready) and not (ctx.get(dut.o.valid) and ctx.get(dut.o.payload) == words[sent])
            if ctx.get(dut.o.valid) and take:
                got.append(ctx.get(dut.o.payload))
            if offer and ctx.get(dut.i.ready):
                sent += 1
            await ctx.tick()
            state["cycles"] += 1

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return got, words, state


@STREAM_REGISTERS
@pytest.mark.parametrize("p_valid,p_ready", [(0.5, 0.5), (0.9, 0.3), (0.3, 0.9), (1.0, 0.7)])
def test_stream_register_keeps_order_under_random_stalls(cls, seed, p_valid, p_ready):
    got, words, state = _run(cls, seed, p_valid, p_ready)
    assert got == words, f"seed {seed}"
    assert state["comb"] == 0, f"i.ready depends on o.ready combinationally (seed {seed})"


@STREAM_REGISTERS
def test_stream_register_streams_one_word_per_cycle(cls, seed):
    got, words, state = _run(cls, seed, 1.0, 1.0)
    assert got == words and state["cycles"] <= len(words) + 2


@pytest.mark.parametrize("p_valid,p_ready", [(0.5, 0.5), (1.0, 0.7)])
def test_ready_register_has_no_latency(seed, p_valid, p_ready):
    """A word the ready register takes is on ``o`` in the same cycle (when no earlier word waits in it);
    the skid buffer, for contrast, always shows a word a cycle later."""
    assert _run(ReadyRegister, seed, p_valid, p_ready)[2]["late"] == 0, f"seed {seed}"
    assert _run(SkidBuffer, seed, p_valid, p_ready)[2]["late"] > 0
