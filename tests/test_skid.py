# amaranth: UnusedElaboratable=no
"""The skid buffer (hw/skid.py) under random stalls on both sides, in Amaranth's simulator."""
import random

import pytest
from amaranth.sim import Simulator

from tridsa.hw.skid import SkidBuffer


def _run(seed, p_valid, p_ready, n=300):
    """Stream ``n`` random words through; return (words out, cycles, cycles where i.ready changed
    combinationally with o.ready)."""
    rng = random.Random(seed)
    dut = SkidBuffer(16)
    words = [rng.randrange(1 << 16) for _ in range(n)]
    got, state = [], {"cycles": 0, "comb": 0}

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


@pytest.mark.parametrize("p_valid,p_ready", [(0.5, 0.5), (0.9, 0.3), (0.3, 0.9), (1.0, 0.7)])
def test_skid_buffer_keeps_order_under_random_stalls(seed, p_valid, p_ready):
    got, words, state = _run(seed, p_valid, p_ready)
    assert got == words, f"seed {seed}"
    assert state["comb"] == 0, f"i.ready depends on o.ready combinationally (seed {seed})"


def test_skid_buffer_streams_one_word_per_cycle(seed):
    got, words, state = _run(seed, 1.0, 1.0)
    assert got == words and state["cycles"] <= len(words) + 2
