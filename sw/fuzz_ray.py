"""The differential fuzz campaign of :mod:`tridsa.sw.fuzz` on Ray workers (``tridsa fuzz --ray``).

Programs ``start .. start+n-1`` of a seed are cut into chunks of consecutive indices; each chunk is one
Ray task running :func:`tridsa.sw.fuzz.fuzz` on that range (Program ``i`` is a pure function of the
Config, the seed and ``i``, so a chunk generates, compares, shrinks and saves exactly what the serial
loop does for those indices). The chunk reports are merged in index order: the same Programs,
instruction counts, ops, final status counts and failures (with their shrunk replay files) as the serial
run; only the wall-clock time differs. A chunk whose worker dies is run again
(:func:`tridsa.sw.cluster.map_tasks`) and listed in ``FuzzReport.retried``.
"""
from __future__ import annotations

import time

from . import fuzz as _fuzz
from .cluster import connect, map_tasks

__all__ = ["fuzz_ray", "chunks"]


def chunks(start: int, n: int, workers: int) -> list:
    """``(first index, count)`` ranges covering ``start .. start+n-1``, about four per worker (a dead
    worker loses one small chunk, and fast chunks balance slow ones)."""
    size = max(1, -(-n // (4 * workers)))
    return [(first, min(size, start + n - first)) for first in range(start, start + n, size)]


def _run_chunk(job):
    first, count, kwargs = job
    return _fuzz.fuzz(n=count, start=first, **kwargs)


def fuzz_ray(config, backend: str = "verilator", n: int = 100, seed: int = 0, out=None, instructions: int = 8,
             max_cost: int = _fuzz.MAX_COST, shrink_budget: int = 40, progress=None, start: int = 0,
             backend_obj=None, workers: int | None = None, address: str | None = None,
             num_cpus: int | None = None) -> "_fuzz.FuzzReport":
    """:func:`tridsa.sw.fuzz.fuzz` on Ray; ``progress(report, total)`` after each chunk, ``workers`` tasks
    in flight (default: the cluster's CPUs). ``backend_obj`` is pickled to every worker."""
    ray = connect(address, num_cpus)
    workers = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
    kwargs = dict(config=config, backend=backend, seed=seed, out=None if out is None else str(out),
                  instructions=instructions, max_cost=max_cost, shrink_budget=shrink_budget,
                  backend_obj=backend_obj)
    jobs = [(first, count, kwargs) for first, count in chunks(start, n, workers)]
    t0 = time.perf_counter()
    seen = _fuzz.FuzzReport(backend=backend, seed=seed)        # running totals for ``progress``

    def step(finished, total, item, outcome):
        if progress and isinstance(outcome, _fuzz.FuzzReport):
            seen.failures += outcome.failures
            for _ in range(outcome.programs):          # one call per Program, as the serial loop makes
                seen.programs += 1
                seen.seconds = time.perf_counter() - t0
                progress(seen, n)

    parts, retried = map_tasks(_run_chunk, jobs, workers=workers, progress=step)
    report = _fuzz.FuzzReport(backend=backend, seed=seed, retried=[str(r) for r in retried])
    for part in parts:
        report.programs += part.programs
        report.instructions += part.instructions
        for name, count in part.ops.items():
            report.ops[name] = report.ops.get(name, 0) + count
        for name, count in part.errors.items():
            report.errors[name] = report.errors.get(name, 0) + count
        report.failures += part.failures
    report.seconds = time.perf_counter() - t0
    return report
