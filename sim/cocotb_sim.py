"""The cocotb-verilator and icarus backends: cocotb runs the generated Verilog of :class:`tridsa.hw.top.Top`.

The testbench path, kept beside the fast ``verilator`` backend (:mod:`tridsa.sim.verilator_model`) so the
same Programs run under cocotb on both simulators. One model is compiled per (Config, simulator, gateware
sources, toolchain) and cached on disk (see :func:`tridsa.sim.cocotb_run.build_design`). A run writes the
memory image as a ``$readmemh`` file, cocotb pushes the instructions and awaits ``halted`` (GPI clock, no
Python in the per-cycle loop), then the memory model ``$writememh``-s the final image. A new simulator
process runs every Program. ``waves=PATH`` (Icarus) writes every run's FST.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from ..sw.program import RunResult
from .backend_base import Backend, wave_paths
from .cocotb_run import build_design, run_directory, run_test
from .memimage import read_hex, write_hex

__all__ = ["CocotbBackend", "TOPLEVEL"]

TOPLEVEL = "tridsa_top"
SIM_MEM = Path(__file__).with_name("sim_mem.v")


class CocotbBackend(Backend):
    def __init__(self, config, simulator, max_cycles=50_000_000, waves=None, mem_stall_seed=0):
        from .toolchain import prepare_simulator
        super().__init__(config)
        self.mem_stall_seed = mem_stall_seed        # random memory stalls (sim/sim_mem.v), 0: none
        prepare_simulator(simulator)          # a missing simulator is an error now, not at the first run
        self.simulator = simulator
        self.name = "icarus" if simulator == "icarus" else f"cocotb-{simulator}"
        self.max_cycles = max_cycles
        self.waves = wave_paths(waves, ".fst")
        self._built = None

    def _build(self):
        """(runner, build_dir, counter names); the names are recorded with the build they belong to."""
        if self._built is None:
            from ..hw.top import Top, counter_names
            runner, build_dir = build_design(lambda: Top(self.config, storage="verilog"), TOPLEVEL,
                                             self.config.to_json(), self.simulator, extra_sources=(SIM_MEM,))
            names = build_dir / "counters.json"
            if not names.exists():
                names.write_text(json.dumps({"names": list(counter_names(self.config)), "bits": self.config.counter_bits}))
            self._built = runner, build_dir, json.loads(names.read_text())
        return self._built

    def run(self, program):
        self._check(program)
        runner, build_dir, counters = self._build()
        with run_directory(build_dir) as run_dir:
            write_hex(program.memory, run_dir / "mem_in.hex")
            (run_dir / "program.json").write_text(json.dumps(
                {"instructions": [hex(int(w)) for w in program.instructions], "max_cycles": self.max_cycles,
                 "counters": counters}))
            start = time.perf_counter()
            run_test(runner, build_dir, TOPLEVEL, "tridsa.sim.cocotb_top_tb", test_dir=run_dir,
                     extra_env={"TRIDSA_RUN_DIR": str(run_dir)}, waves=next(self.waves) if self.waves else None,
                     plusargs=[f"+mem_in={run_dir / 'mem_in.hex'}", f"+mem_out={run_dir / 'mem_out.hex'}",
                              f"+mem_stall_seed={self.mem_stall_seed}"])
            wall = time.perf_counter() - start
            status = json.loads((run_dir / "status.json").read_text())
            memory = read_hex(run_dir / "mem_out.hex", self.config.mem_depth, self.config.mem_width)
        counters = dict(status["counters"], wall_seconds=wall)
        return RunResult(memory=memory, error=status["error"], error_pc=status["error_pc"], counters=counters)
