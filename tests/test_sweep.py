"""Sweeps and fuzz campaigns on Ray (sw/sweep.py, sw/fuzz_ray.py, sw/cluster.py), on one local 2-CPU Ray
per session.

A worker that dies is simulated by a backend that SIGKILLs its own worker process the first time it sees
a given Program (a marker file says it did): the campaign must retry that chunk, say so, and end with
exactly the serial run's report.
"""
import json
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import SMALL
from tridsa.sw import cluster, fuzz, fuzz_cli, fuzz_ray, sweep
from tridsa.spec import isa
from tridsa.sw.golden import execute
from tridsa.sw.program import RunResult


def _same_campaign(a, b):
    """Two FuzzReports with the same Programs, counts and failures (times aside)."""
    assert (a.programs, a.instructions, a.ops, a.errors) == (b.programs, b.instructions, b.ops, b.errors)
    assert [(i, str(m), [Path(p).name for p in paths]) for i, m, paths in a.failures] == \
           [(i, str(m), [Path(p).name for p in paths]) for i, m, paths in b.failures]


class FlipAfterGemm:
    """A golden backend with an injected bug: a stray write after any GEMM (shipped to the Ray workers)."""
    name = "mutant"

    def run(self, program):
        result = execute(program)
        if any(isa.decode(w)[0] is not None and isa.decode(w)[0].name == "GEMM"
               for w in program.instructions[:result.counters["retired"]]):
            memory = result.memory.copy()
            memory[-1, 0] ^= 1
            return RunResult(memory, result.error, result.error_pc, result.counters)
        return result


class DiesOnce(FlipAfterGemm):
    """Kills its worker process the first time it runs Program ``victim`` of the campaign."""

    def __init__(self, marker, victim):
        self.marker, self.victim = str(marker), victim

    def run(self, program):
        if program.instructions == self.victim and not os.path.exists(self.marker):
            Path(self.marker).write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)
        return super().run(program)


@pytest.fixture
def ship_test_classes(local_ray):
    """Let the Ray workers unpickle this module's backends (they cannot import the test module)."""
    from ray import cloudpickle
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield
    cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def test_fuzz_on_ray_equals_the_serial_run(ship_test_classes, tmp_path):
    serial = fuzz.fuzz(SMALL, "mutant", n=24, seed=1, out=tmp_path / "serial", backend_obj=FlipAfterGemm(),
                       shrink_budget=10)
    assert serial.failures, "the injected bug was not found"
    ray_run = fuzz_ray.fuzz_ray(SMALL, "mutant", n=24, seed=1, out=tmp_path / "ray", backend_obj=FlipAfterGemm(),
                                shrink_budget=10, workers=2)
    _same_campaign(serial, ray_run)
    assert not ray_run.retried
    for _, _, (original, small) in serial.failures:       # the same shrunk replay files
        other = tmp_path / "ray" / Path(small).name
        assert np.array_equal(np.load(small)["memory"], np.load(other)["memory"])


def test_a_worker_killed_mid_campaign_is_retried_and_nothing_is_lost(ship_test_classes, tmp_path):
    victim = fuzz.random_program(SMALL, fuzz.program_rng(4, 13)).instructions
    serial = fuzz.fuzz(SMALL, "mutant", n=20, seed=4, backend_obj=FlipAfterGemm())
    marker = tmp_path / "killed"
    ray_run = fuzz_ray.fuzz_ray(SMALL, "mutant", n=20, seed=4, backend_obj=DiesOnce(marker, victim), workers=2)
    assert marker.exists(), "the worker was not killed"
    assert len(ray_run.retried) == 1 and "WorkerCrashedError" in ray_run.retried[0]
    assert "worker lost" in ray_run.summary()
    _same_campaign(serial, ray_run)


class NeedsTwoArguments(RuntimeError):
    """An exception Ray cannot rebuild in the caller (its constructor takes two arguments)."""

    def __init__(self, a, b):
        super().__init__(f"needs {a} and {b}")


def _raise_needs_two(x):
    raise NeedsTwoArguments(x, x + 1)


def test_map_tasks_raises_the_tasks_own_error(ship_test_classes):
    with pytest.raises(ZeroDivisionError):
        cluster.map_tasks(lambda x: 1 // x, [1, 0], workers=2)
    with pytest.raises(cluster.TaskError, match="task 0 failed: .*needs 5 and 6"):
        cluster.map_tasks(_raise_needs_two, [5], workers=1)


def test_unreachable_address_fails_fast(capsys):
    import socket
    with socket.socket() as s:          # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.perf_counter()
    code = fuzz_cli.main(["--backend", "golden", "--n", "2", "--ray", "--address", f"127.0.0.1:{port}"])
    assert code == 2 and time.perf_counter() - start < 10
    assert f"--address 127.0.0.1:{port}: no Ray cluster reachable" in capsys.readouterr().err
    assert fuzz_cli.main(["--backend", "golden", "--n", "2", "--workers", "2"]) == 2      # needs --ray
    with pytest.raises(cluster.ClusterError, match="invalid"):
        cluster.connect("nowhere")


# ---- tridsa sweep ---------------------------------------------------------------------------------------
def test_pareto_front():
    pts = [dict(x=1, y=9), dict(x=2, y=5), dict(x=2, y=7), dict(x=4, y=6), dict(x=8, y=1)]
    assert [(p["x"], p["y"]) for p in sweep.pareto_front(pts, "x", "y")] == [(1, 9), (2, 5), (8, 1)]
    assert [(p["x"], p["y"]) for p in sweep.pareto_front(pts, "x", "y", maximize_y=True)] == [(1, 9)]
    both = sweep.pareto_front(pts, "x", "y", maximize_y=True, maximize_x=True)
    assert [(p["x"], p["y"]) for p in both] == [(1, 9), (2, 7), (4, 6), (8, 1)]


def test_grid_widens_the_memory_port_and_names_bad_values():
    configs = sweep.grid([(4, 4), (16, 16)], [4096], [(4, 2), (8, 4)])
    assert [(c.rows, c.mem_width, c.cache_sets) for c in configs] == [(4, 32, 4), (4, 32, 8), (16, 64, 4),
                                                                      (16, 64, 8)]
    with pytest.raises(ValueError, match="cache_sets"):
        sweep.grid([(4, 4)], [4096], [(3, 2)])


def test_sweep_writes_results_and_plots(local_ray, tmp_path, capsys):
    from tridsa.sw.cli import main
    code = main(["sweep", "--array", "4x4", "--cache", "4x2,16x4", "--workloads", "gather,gemm",
                 "--backend", "golden", "--workers", "2", "--out", str(tmp_path)])
    assert code == 0, capsys.readouterr().err
    report = json.loads((tmp_path / "sweep.json").read_text())
    assert report["points"] == 4 and report["all_exact"] and not report["retried"]
    gather = sorted((r["cache_rows"], r["hit_rate"]) for r in report["results"] if r["workload"] == "gather")
    assert gather[0][0] == 8 and gather[1][0] == 64 and 0 < gather[0][1] < gather[1][1] < 1
    gemm = [r for r in report["results"] if r["workload"] == "gemm"]
    assert all(r["cycles"] > 0 and 0 < r["utilization"] <= 1 for r in gemm)     # golden: the cycle model
    assert all(r["utilization"] is None for r in report["results"] if r["workload"] == "gather")   # no MACs
    for name in ("hit_rate_vs_cache", "cycles_vs_array", "cycles_vs_memory", "utilization_vs_array"):
        assert (tmp_path / f"sweep_{name}.png").stat().st_size > 0
    assert main(["sweep", "--workloads", "resnet", "--out", str(tmp_path)]) == 2


@pytest.mark.slow
def test_sweep_on_amaranth_measures_cycles(local_ray, tmp_path):
    configs = sweep.grid([(4, 4)], [2048], [(4, 2)], SMALL)
    report = sweep.sweep(configs, ["gemm"], "amaranth", tmp_path, workers=2)
    (result,) = report["results"]
    assert result["exact"] and result["cycles"] > 0 and 0 < result["utilization"] <= 1
    assert (tmp_path / "sweep_utilization_vs_array.png").stat().st_size > 0
