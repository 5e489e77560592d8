"""``tridsa bench ray``: wall-clock time of a sweep and of a fuzz campaign on Ray with 1, 2, ... workers.

The same work each time on the same Ray instance (local unless ``address``): ``tridsa sweep`` of a grid
of Configs x workloads (:func:`tridsa.sw.sweep.sweep`) and ``tridsa fuzz --ray`` of ``programs`` Programs
(:func:`tridsa.sw.fuzz_ray.fuzz_ray`, checked equal to each other's report). Speed-up is the 1-worker
time over the N-worker time; on a shared machine it also depends on what else runs, so the table
prints the load average next to it.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

from tridsa.sw.cluster import connect
from tridsa.sw.config import Config
from tridsa.sw.fuzz_ray import fuzz_ray
from tridsa.sw.sweep import grid, sweep

from .report import Progress, markdown_table, write_json

__all__ = ["run"]


def run(config: Config, backend: str = "golden", out_dir="benchmarks/out", workers=(1, 2), programs: int = 300,
        address=None, quick: bool = False) -> dict:
    out_dir = Path(out_dir)
    ray = connect(address)
    cpus = int(ray.cluster_resources().get("CPU", 1))
    programs = 80 if quick else programs
    configs = grid([(4, 4), (8, 8)], [config.mem_depth], [(4, 2), (16, 4)] if quick else [(4, 2), (8, 4), (16, 4), (64, 4)],
                   config)
    workloads = ["gather", "dlrm"]
    rows, reports = [], []
    with Progress(2 * len(workers), "ray") as bar:
        for n in workers:
            bar.step(f"sweep, {n} workers")
            load = os.getloadavg()[0]
            start = time.perf_counter()
            result = sweep(configs, workloads, backend, out_dir / f"ray-sweep-{n}", workers=n)
            rows.append(dict(job=f"sweep ({result['points']} points, {backend})", workers=n,
                             seconds=time.perf_counter() - start, load=load, retried=len(result["retried"])))
            bar.step(f"fuzz, {n} workers")
            load = os.getloadavg()[0]
            start = time.perf_counter()
            report = fuzz_ray(config, backend, programs, seed=0, workers=n)
            rows.append(dict(job=f"fuzz ({programs} Programs, {backend})", workers=n,
                             seconds=time.perf_counter() - start, load=load, retried=len(report.retried)))
            reports.append(report)
    for row in rows:
        first = next(r for r in rows if r["job"] == row["job"])
        row["speedup"] = first["seconds"] / row["seconds"]
    same = all((r.programs, r.instructions, r.ops, r.errors, [f[:2] for f in r.failures]) ==
               (reports[0].programs, reports[0].instructions, reports[0].ops, reports[0].errors,
                [f[:2] for f in reports[0].failures]) for r in reports)
    print(f"## Ray: 1 vs more workers ({cpus} CPUs in the Ray instance; machine load average in the table)\n")
    print(markdown_table(rows, ["job", "workers", "seconds", "speedup", "load", "retried"], digits=2))
    print(f"\nfuzz reports identical for every worker count: {'yes' if same else 'NO'}")
    write_json(out_dir / "ray.json", dict(
        produced_by=f"tridsa bench ray --backend {backend} (wall-clock seconds on this machine)",
        backend=backend, ray_cpus=cpus, machine_cpus=os.cpu_count(), rows=rows, fuzz_identical=same))
    return dict(rows=rows, ok=same)
