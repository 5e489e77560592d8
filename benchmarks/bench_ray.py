"""``tridsa bench ray``: wall-clock time of a sweep and of a fuzz campaign on Ray with 1, 2, ... workers.

The same work each time on the same Ray instance (local unless ``address``), after a warm-up run that
starts every worker process, best of ``repeats`` runs: ``tridsa sweep`` of a grid of Configs x workloads
(:func:`tridsa.sw.sweep.sweep`) and ``tridsa fuzz --ray`` of ``programs`` Programs
(:func:`tridsa.sw.fuzz_ray.fuzz_ray`, checked equal to each other's report). Speed-up is the 1-worker
time over the N-worker time; on a shared machine it also depends on what else runs, so the table
prints the load average next to it and a reference job without tridsa (6 tasks of 1 CPU-second each):
its speed-up is what the machine allows at that moment.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

from tridsa.sw.cluster import connect, map_tasks
from tridsa.spec.config import Config
from tridsa.sw.fuzz_ray import fuzz_ray
from tridsa.sw.sweep import grid, sweep

from .report import Progress, markdown_table, write_json, write_section

__all__ = ["run"]


def _spin(_):
    """One second of CPU time in a busy loop: what the machine gives a task, without any tridsa work."""
    start = time.process_time()
    while time.process_time() - start < 1.0:
        pass


def run(config: Config, backend: str = "golden", out_dir="benchmarks/out", workers=(1, 2), programs: int = 1000,
        address=None, quick: bool = False, repeats: int = 2, publish: bool = False) -> dict:
    """Time the jobs (see the module docstring); ``publish`` also writes the table into the docs'
    ``bench-ray`` section."""
    out_dir = Path(out_dir)
    ray = connect(address)
    cpus = int(ray.cluster_resources().get("CPU", 1))
    programs = 80 if quick else programs
    configs = grid([(4, 4), (8, 8)] if quick else [(4, 4), (8, 8), (16, 16)], [config.mem_depth],
                   [(4, 2), (16, 4)] if quick else [(4, 2), (8, 4), (16, 4), (64, 4)], config)
    workloads = ["gather", "dlrm", "gemm"]
    rows, reports = [], []

    def timed(job, work, n):
        """Best of ``repeats`` wall-clock runs of ``work(n)`` (the least disturbed by other load)."""
        best = None
        for _ in range(repeats):
            load = os.getloadavg()[0]
            start = time.perf_counter()
            result = work(n)
            seconds = time.perf_counter() - start
            if best is None or seconds < best[0]:
                best = (seconds, load, result)
        rows.append(dict(job=job, workers=n, seconds=best[0], load=best[1], retried=len(
            best[2]["retried"] if isinstance(best[2], dict) else best[2].retried)))
        return best[2]

    run_spin = lambda n: dict(retried=map_tasks(_spin, range(6), workers=n)[1])
    run_sweep = lambda n: sweep(configs, workloads, backend, out_dir / f"ray-sweep-{n}", workers=n)
    run_fuzz = lambda n: fuzz_ray(config, backend, programs, seed=0, workers=n)
    with Progress(2 * len(workers) + 1, "ray") as bar:
        bar.step("warm-up: every worker process imports tridsa")
        sweep(configs[:1], workloads, backend, out_dir / "ray-warmup", workers=max(workers))
        fuzz_ray(config, backend, 4 * max(workers), seed=1, workers=max(workers))
        for n in workers:
            timed("reference: 6 tasks of 1 CPU-second", run_spin, n)
            bar.step(f"sweep, {n} workers")
            timed(f"sweep ({len(configs) * len(workloads)} points, {backend})", run_sweep, n)
            bar.step(f"fuzz, {n} workers")
            reports.append(timed(f"fuzz ({programs} Programs, {backend})", run_fuzz, n))
    for row in rows:
        first = next(r for r in rows if r["job"] == row["job"])
        row["speedup"] = first["seconds"] / row["seconds"]
    same = all((r.programs, r.instructions, r.ops, r.errors, [f[:2] for f in r.failures]) ==
               (reports[0].programs, reports[0].instructions, reports[0].ops, reports[0].errors,
                [f[:2] for f in reports[0].failures]) for r in reports)
    text = "\n".join([
        f"`tridsa bench ray --backend {backend}{' --quick' if quick else ''}`: wall-clock seconds (best of {repeats}) "
        f"with {cpus} CPUs in the Ray instance on a {os.cpu_count()}-core machine; `load` is the machine's "
        "1-minute load average when the run started (other work shares the cores)", "",
        markdown_table(rows, ["job", "workers", "seconds", "speedup", "load", "retried"], digits=2), "",
        f"Fuzz reports identical for every worker count: {'yes' if same else 'NO'}."])
    print(text)
    if publish:
        write_section("bench-ray", text)
    write_json(out_dir / "ray.json", dict(
        produced_by=f"tridsa bench ray --backend {backend} (wall-clock seconds on this machine)",
        backend=backend, ray_cpus=cpus, machine_cpus=os.cpu_count(), rows=rows, fuzz_identical=same))
    return dict(rows=rows, ok=same)
