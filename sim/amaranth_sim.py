"""The amaranth backend: the gateware in Amaranth's Python simulator (slow; for small configs)."""
from __future__ import annotations

import time

from ..sw.program import RunResult
from .backend_base import Backend, CycleLimit, wave_paths
from .memimage import from_ints, to_ints

__all__ = ["AmaranthBackend"]


class AmaranthBackend(Backend):
    """``waves=PATH`` writes every run's VCD (see :func:`tridsa.sim.backend_base.wave_paths`); ``mem_stall_seed``:
    random memory stalls (:class:`tridsa.hw.memory.MemoryModel`)."""
    name = "amaranth"

    def __init__(self, config, max_cycles=2_000_000, waves=None, mem_stall_seed=0):
        super().__init__(config)
        self.mem_stall_seed = mem_stall_seed
        self.max_cycles = max_cycles
        self.waves = wave_paths(waves, ".vcd")

    def run(self, program):
        from amaranth.sim import Simulator
        from ..hw.top import Top
        self._check(program)
        cfg = self.config
        top = Top(cfg, storage="amaranth", init=to_ints(program.memory), stall_seed=self.mem_stall_seed)
        sim = Simulator(top)
        sim.add_clock(1e-8)
        out = {}

        async def testbench(ctx):
            for word in program.instructions:
                ctx.set(top.cmd.payload, int(word))
                ctx.set(top.cmd.valid, 1)
                await ctx.tick().until(top.cmd.ready)
            ctx.set(top.cmd.valid, 0)
            waited = 0
            while not ctx.get(top.halted):
                await ctx.tick().repeat(16)
                waited += 16
                if waited > self.max_cycles:
                    raise CycleLimit(f"no halt within {self.max_cycles} cycles")
            out["error"] = ctx.get(top.error)
            out["error_pc"] = ctx.get(top.error_pc)
            out["counters"] = {name: ctx.get(getattr(top.counters, name)) for name in top.counter_names}
            mem = top.memory.storage_memory
            out["words"] = [ctx.get(mem.data[i]) for i in range(cfg.mem_depth)]

        sim.add_testbench(testbench)
        start = time.perf_counter()
        if self.waves:
            with sim.write_vcd(next(self.waves)):
                sim.run()
        else:
            sim.run()
        wall = time.perf_counter() - start
        counters = dict(out["counters"], wall_seconds=wall)
        return RunResult(memory=from_ints(out["words"], cfg.mem_width), error=out["error"],
                         error_pc=out["error_pc"], counters=counters)
