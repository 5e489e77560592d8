"""``tridsa sweep``: a design-space sweep, Configs x workloads (and optionally FPGA builds), as Ray tasks.

The grid is the product of the axes: array shapes (``--array 4x4,8x8``), memory depths (``--mem-depth``),
row caches (``--cache SETSxWAYS``) and workloads (:data:`WORKLOADS`); one Ray task per (Config,
workload) point runs the workload on ``--backend`` and on the golden model (``exact``: same output bit
for bit) and returns its figures: cycles, MAC utilization, row-cache hit rate. ``--fpga BOARD`` adds one
task per Config running :func:`tridsa.sw.build.build` (fits, Fmax, resources). Tasks whose worker dies
are retried (:func:`tridsa.sw.cluster.map_tasks`) and listed in the report.

Writes ``DIR/sweep.json`` (every point, the retries, the wall-clock time and the number of workers) and
Pareto plots: ``sweep_cycles_vs_array.png``, ``sweep_cycles_vs_memory.png`` (fewer cycles with fewer
resources), ``sweep_utilization_vs_array.png`` (higher utilization of a larger array) and
``sweep_hit_rate_vs_cache.png`` (higher hit rate with a smaller cache): every point, and per workload
the front of points no other point dominates.
"""
from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np

from ..spec.config import Config

__all__ = ["WORKLOADS", "grid", "run_point", "sweep", "pareto_front", "main"]


def _gemm(acc):
    rng = np.random.default_rng(0)
    return acc.matmul(rng.integers(-128, 128, (64, 64)), rng.integers(-128, 128, (64, 64)))


def _gather(acc):
    from .dlrm_traffic import make_bags
    rows = 1280
    table = np.random.default_rng(0).integers(-128, 128, (rows, 64)).astype(np.int8)
    idx, off = make_bags(100, 20, rows, dist="zipf", alpha=1.0, rng=0)
    return acc.embedding_bag(table, idx, off)


def _dlrm(acc):
    from .workloads.dlrm import load_dlrm, synthetic_ctr
    dense, sparse, _ = synthetic_ctr(32, 0)
    return load_dlrm("int8").forward(acc, dense, sparse)


#: workload name -> function(acc) -> output array (``acc``: anything with the driver's layer methods).
WORKLOADS = {"gemm": _gemm, "gather": _gather, "dlrm": _dlrm}


def _figures(totals: dict, config: Config) -> dict:
    """cycles, MACs, INT8 MAC utilization and row-cache hit rate of a workload's summed counters."""
    cycles, macs, lookups = totals["cycles"], totals["macs"], totals["gather_lookups"]
    return dict(cycles=cycles, macs=macs,
                utilization=macs / (config.peak_macs_int8 * cycles) if cycles and macs else None,
                hit_rate=totals["gather_hits"] / lookups if lookups else None)


def run_point(point: dict) -> dict:
    """One grid point (a Ray task): ``point`` holds ``config`` (dict), ``workload``, ``backend``; or
    ``config``, ``board`` and ``out`` for an FPGA build."""
    config = Config.from_dict(point["config"])
    start = time.perf_counter()
    if "board" in point:
        from .build import DesignTooLarge, build
        try:
            report = dict(build(point["board"], config, point["out"]), fits=True)
        except DesignTooLarge as exc:                # a finding of the sweep, not a failure
            report = dict(fits=False, over={bel: list(v) for bel, v in exc.over.items()})
        return dict(point, report=report, seconds=time.perf_counter() - start)
    from .driver import Accelerator
    from .metered import Metered
    run = WORKLOADS[point["workload"]]
    acc = Metered(Accelerator(point["backend"], config))
    got = run(acc)
    want = run(Accelerator("golden", config))
    return dict(point, **_figures(acc.totals, config), exact=bool(np.array_equal(got, want)),
                seconds=time.perf_counter() - start)


def _parse_list(text: str, name: str, parse) -> list:
    try:
        values = [parse(v.strip()) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values:
        raise ValueError(f"--{name} {text!r} is invalid: give a comma-separated list")
    return values


def _pair(text: str):
    a, sep, b = text.lower().partition("x")
    if not sep:
        raise ValueError(text)
    return int(a), int(b)


def grid(arrays, mem_depths, caches, base: Config | None = None) -> list:
    """Configs of the product of the axes (``arrays``: (rows, cols), ``caches``: (sets, ways)); the memory
    port is widened to ``4 * cols`` bytes where the array needs it. An invalid combination raises
    ValueError naming it."""
    base = base or Config()
    configs = []
    for (rows, cols), depth, (sets, ways) in itertools.product(arrays, mem_depths, caches):
        width = max(base.mem_width, 4 * cols, rows)
        configs.append(dataclasses.replace(base, rows=rows, cols=cols, mem_width=width, mem_depth=depth,
                                           cache_sets=sets, cache_ways=ways))
    return configs


def pareto_front(points, x: str, y: str, maximize_y: bool = False, maximize_x: bool = False) -> list:
    """The points no other point dominates (at least as good in ``x`` and ``y``, better in one; "good" is
    smaller unless ``maximize_*``), sorted by ``x``."""
    sx, sy = (-1 if maximize_x else 1), (-1 if maximize_y else 1)
    front, best = [], None
    for p in sorted(points, key=lambda p: (sx * p[x], sy * p[y])):
        if best is None or sy * p[y] < best:
            front.append(p)
            best = sy * p[y]
    return sorted(front, key=lambda p: p[x])


def _plot(path, results, x, y, xlabel, ylabel, title, maximize_y=False, maximize_x=False):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    try:
        for workload in sorted({r["workload"] for r in results}):
            pts = [r for r in results if r["workload"] == workload and r.get(y) is not None]
            if not pts:
                continue
            line = ax.plot([p[x] for p in pts], [p[y] for p in pts], "o", alpha=0.4, label=f"{workload}")[0]
            front = pareto_front(pts, x, y, maximize_y, maximize_x)
            ax.plot([p[x] for p in front], [p[y] for p in front], "-", color=line.get_color(),
                    label=f"{workload} Pareto front")
        ax.set_xscale("log", base=2)
        if y == "cycles":
            ax.set_yscale("log")
        ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)
    return str(path)


def sweep(configs, workloads, backend: str = "golden", out_dir="sweep", workers: int | None = None,
          board: str | None = None, address: str | None = None, num_cpus: int | None = None,
          progress=None) -> dict:
    """Run the grid on Ray; write ``sweep.json`` and the plots into ``out_dir``; return the report."""
    from .cluster import connect, map_tasks
    unknown = [w for w in workloads if w not in WORKLOADS]
    if unknown:
        raise ValueError(f"unknown workload(s) {', '.join(unknown)}: expected some of {', '.join(WORKLOADS)}")
    out = Path(out_dir)
    points = [dict(config=c.to_dict(), workload=w, backend=backend) for c in configs for w in workloads]
    if board:
        points += [dict(config=c.to_dict(), board=board, out=str((out / f"build-{i}").resolve()))
                   for i, c in enumerate(configs)]
    connect(address, num_cpus)
    start = time.perf_counter()
    results, retried = map_tasks(run_point, points, workers=workers, progress=progress)
    seconds = time.perf_counter() - start
    for r in results:
        cfg = r["config"]
        r.update(pes=cfg["rows"] * cfg["cols"], memory_bytes=cfg["mem_depth"] * cfg["mem_width"],
                 cache_rows=cfg["cache_sets"] * cfg["cache_ways"])
    runs = [r for r in results if "workload" in r]
    out.mkdir(parents=True, exist_ok=True)
    plots = []
    if any(r["cycles"] is not None for r in runs):         # every backend but the FPGA link counts cycles
        plots += [_plot(out / "sweep_cycles_vs_array.png", runs, "pes", "cycles", "array size (PEs)", "cycles",
                        f"cycles vs array size ({backend})"),
                  _plot(out / "sweep_cycles_vs_memory.png", runs, "memory_bytes", "cycles", "memory (bytes)",
                        "cycles", f"cycles vs memory ({backend})"),
                  _plot(out / "sweep_utilization_vs_array.png", runs, "pes", "utilization", "array size (PEs)",
                        "MAC utilization", f"utilization vs array size ({backend})", maximize_y=True,
                        maximize_x=True)]
    if any(r["hit_rate"] is not None for r in runs):
        plots.append(_plot(out / "sweep_hit_rate_vs_cache.png", runs, "cache_rows", "hit_rate",
                           "row cache (rows)", "hit rate", f"row cache hit rate vs cache size ({backend})",
                           maximize_y=True))
    report = dict(produced_by=f"tridsa sweep --backend {backend} (figures: "
                  + ("cycle model, sw/cycle_model.py" if backend == "golden" else f"RTL counters on {backend}") + ")",
                  backend=backend, workers=workers, seconds=seconds, points=len(points),
                  all_exact=all(r["exact"] for r in runs), results=results,
                  retried=[dataclasses.asdict(r) for r in retried], plots=plots)
    (out / "sweep.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    return report


def main(argv=None) -> int:
    """``tridsa sweep``: exit 0 if every point matched the golden model, 1 if not, 2 on a usage error."""
    from .cli import CliError, Parser, config_from_args
    from .cluster import ClusterError, Retry, connect
    from .progress import Progress
    from ..sim.backend import BACKENDS
    parser = Parser(prog="tridsa sweep", description=(
        "Design-space sweep: Configs x workloads as Ray tasks (local Ray, or a cluster with --address); "
        "writes sweep.json and Pareto plots. docs/multichip.md"))
    parser.add_argument("--array", default="4x4,8x8,16x16", metavar="RxC,...", help="array shapes (default: %(default)s)")
    parser.add_argument("--mem-depth", metavar="N,...", help="memory depths in words (default: the base Config's)")
    parser.add_argument("--cache", default="4x4,16x4,64x4", metavar="SETSxWAYS,...",
                        help="row cache geometries (default: %(default)s)")
    parser.add_argument("--workloads", default=",".join(WORKLOADS), metavar="W,...",
                        help=f"some of {', '.join(WORKLOADS)} (default: all)")
    parser.add_argument("--backend", default="golden", choices=BACKENDS,
                        help="backend of every point (default: %(default)s: cycles from the cycle model)")
    parser.add_argument("--fpga", metavar="BOARD", help="also build every Config for this board (tridsa build)")
    parser.add_argument("--workers", type=int, metavar="N", help="tasks in flight (default: the cluster's CPUs)")
    parser.add_argument("--address", metavar="HOST:PORT", help="join this Ray cluster (default: a local instance)")
    parser.add_argument("--out", default="sweep", metavar="DIR", help="output folder (default: %(default)s)")
    parser.add_argument("--config", metavar="FILE.json", help="base Config as JSON (default: Config())")
    try:
        ns = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    try:
        if ns.workers is not None and ns.workers < 1:
            raise CliError("--workers must be >= 1")
        base = config_from_args(argparse.Namespace(config=ns.config))
        depths = _parse_list(ns.mem_depth, "mem-depth", int) if ns.mem_depth else [base.mem_depth]
        configs = grid(_parse_list(ns.array, "array", _pair), depths,
                       _parse_list(ns.cache, "cache", _pair), base)
        workloads = _parse_list(ns.workloads, "workloads", str)
        total = len(configs) * len(workloads) + (len(configs) if ns.fpga else 0)
        connect(ns.address)                 # before any work: an unreachable cluster fails here
        with Progress(total, "sweep") as bar:
            def progress(done, total, item, outcome):
                if isinstance(outcome, Retry):
                    print(f"sweep: {outcome}", file=sys.stderr)
                else:
                    bar.step("")
            report = sweep(configs, workloads, ns.backend, ns.out, ns.workers, ns.fpga, ns.address,
                           progress=progress)
    except (CliError, ClusterError, ValueError) as exc:
        print(f"tridsa sweep: error: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:                      # a point failed (a simulator, a build tool)
        print(f"tridsa sweep: failed: {str(exc).strip().splitlines()[0]}", file=sys.stderr)
        return 1
    print(f"sweep: {report['points']} points in {report['seconds']:.1f} s on {ns.workers or 'all'} workers, "
          f"{len(report['retried'])} retried; every result bit-exact with golden: "
          f"{'yes' if report['all_exact'] else 'NO'}; wrote {Path(ns.out) / 'sweep.json'}")
    fmt = lambda v: "-" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)
    for r in report["results"]:
        cfg = r["config"]
        what = r.get("workload") or f"build {r.get('board')}"
        figures = (f"cycles {fmt(r['cycles'])} utilization {fmt(r['utilization'])} hit rate {fmt(r['hit_rate'])}"
                   if "workload" in r else json.dumps(r["report"], default=str)[:200])
        print(f"  {cfg['rows']}x{cfg['cols']} mem {cfg['mem_depth']}x{cfg['mem_width']} cache "
              f"{cfg['cache_sets']}x{cfg['cache_ways']} {what}: {figures}")
    return 0 if report["all_exact"] else 1


if __name__ == "__main__":
    sys.exit(main())
