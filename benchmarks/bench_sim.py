"""Simulation speed of every simulator backend (``tridsa bench sim``).

Per backend, int8 matmuls of a small, a medium and a large size run through the driver on the given
Config (after one untimed call that builds the model); the time is the wall time of the whole
``acc.matmul`` call. A least-squares line ``wall = fixed + cycles / rate`` over the three sizes separates
the fixed cost per call (Program set-up, simulator start or hand-over, read-back) from the marginal
simulation speed ``rate`` in cycles/s. The cycles are the RTL cycle counter of the run.

``--flags`` also builds the fast Verilator model with each compiler option of
:data:`tridsa.sim.verilator_model.VERILATOR_FLAGS` / ``MAKE_FLAGS`` added one at a time to a plain build and
measures the large matmul on each, so every flag's effect is on record.

Writes ``sim.json``, ``sim.png`` (wall time vs cycles, log-log; copied to docs/img) and the Markdown table
into the ``bench-sim`` sections of README.md and docs/simulation.md.
"""
from __future__ import annotations

import os
import time

import numpy as np

from benchmarks.report import Progress, line_plot, markdown_table, publish_image, write_json, write_section
from tridsa import Accelerator, Config

#: Matmul sizes (M = K = N) per backend: small, medium, large. The Python and event-driven simulators
#: get smaller "large" problems so the benchmark ends in minutes.
SIZES = {"verilator": (16, 64, 256), "cocotb-verilator": (16, 64, 128), "icarus": (16, 32, 64),
         "amaranth": (8, 16, 24)}
QUICK_SIZES = {"verilator": (16, 64, 128), "cocotb-verilator": (16, 32, 64), "icarus": (16, 24, 32),
               "amaranth": (4, 8, 12)}


def _time_calls(acc, n: int, repeat: int, rng):
    """Best-of-``repeat`` wall time of one ``n``-cube int8 matmul call, and its cycles."""
    a = rng.integers(-128, 128, (n, n), dtype=np.int8)
    b = rng.integers(-128, 128, (n, n), dtype=np.int8)
    want = a.astype(np.int32) @ b.astype(np.int32)
    best = None
    for _ in range(repeat):
        start = time.perf_counter()
        y = acc.matmul(a, b)
        wall = time.perf_counter() - start
        if not np.array_equal(y, want):
            raise AssertionError(f"{acc.backend.name}: the {n}^3 matmul differs from NumPy")
        best = wall if best is None else min(best, wall)
    return best, acc.last_run.cycles


def _fit(points):
    """``(fixed seconds, cycles/s)`` of the line through ``[(cycles, wall)]`` (least squares)."""
    cycles, wall = np.array(points, dtype=float).T
    slope, fixed = np.polyfit(cycles, wall, 1)
    return max(fixed, 0.0), (1 / slope if slope > 0 else None)


def _flag_sweep(config, n, rng, bar):
    """Cycles/s of the large matmul on the fast model built plain and with each option added."""
    from tridsa.sim.verilator_model import MAKE_FLAGS, VERILATOR_FLAGS, VerilatorBackend
    from tridsa.sw.builder import ProgramBuilder
    from tridsa.sw.gemm_ops import emit_gemm
    builder = ProgramBuilder(config)
    emit_gemm(builder, rng.integers(-128, 128, (n, n)), rng.integers(-128, 128, (n, n)), None, None, False,
              "int8", None)
    program = builder.build()
    options = [("-O3", ("-O3",), ()), ("--x-assign fast --x-initial fast", ("--x-assign", "fast", "--x-initial", "fast"), ()),
               ("--noassert", ("--noassert",), ()), ("OPT_FAST=-O3", (), ("OPT_FAST=-O3",))]
    variants = [("plain", (), ())] + [(f"plain + {name}", v, m) for name, v, m in options] + \
        [("all (the backend's build)", VERILATOR_FLAGS, MAKE_FLAGS)]
    rows = []
    for label, vflags, mflags in variants:
        bar.step(f"flags: {label}")
        model = VerilatorBackend(config, 1 << 40, verilator_flags=vflags, make_flags=mflags)
        try:
            best = None
            for _ in range(3):
                start = time.perf_counter()
                counters = model.run(program).counters
                best = min(best or 1e9, time.perf_counter() - start)
            rows.append({"build": label, "cycles": counters["cycles"], "cycles_per_s": counters["cycles"] / best})
        finally:
            model.close()
    return rows


def run(config: Config | None = None, backend: str = "verilator", out_dir="benchmarks/out", *, quick: bool = False,
        backends=None, flags: bool = False, seed: int = 0) -> dict:
    """Measure ``backends`` (default: verilator, cocotb-verilator, icarus, amaranth); see the module doc."""
    config = config or Config()
    backends = tuple(backends or SIZES)
    sizes = QUICK_SIZES if quick else SIZES
    rng = np.random.default_rng(seed)
    rows, series = [], {}
    steps = 4 * len(backends) + (6 if flags else 0)
    with Progress(steps, "bench sim") as bar:
        for name in backends:
            bar.step(f"{name}: building or loading the model")
            acc = Accelerator(name, config)
            _time_calls(acc, 4, 1, rng)                          # builds (or loads) the model: not timed
            points = []
            for label, n in zip(("small", "medium", "large"), sizes[name]):
                bar.step(f"{name}: {label} {n}^3")
                wall, cycles = _time_calls(acc, n, 3 if name == "verilator" else 1, rng)
                points.append((cycles, wall))
                rows.append({"backend": name, "program": f"{label}: {n}^3 int8 matmul", "cycles": cycles,
                             "wall_ms": 1e3 * wall, "cycles_per_s": cycles / wall})
            fixed, rate = _fit(points)
            rows.append({"backend": name, "program": "fixed cost per call / marginal speed", "wall_ms": 1e3 * fixed,
                         "cycles_per_s": rate})
            series[name] = ([c for c, _ in points], [w for _, w in points])
            acc.backend.close()
        flag_rows = _flag_sweep(config, sizes["verilator"][-1], rng, bar) if flags else []
    table = markdown_table(rows, [("backend", "backend"), ("program", "Program"), ("cycles", "cycles"),
                                  ("wall_ms", "wall ms per call"), ("cycles_per_s", "cycles/s")], digits=1)
    load = os.getloadavg()[0]
    source = (f"RTL cycle counter; wall time of `acc.matmul` on this machine ({os.cpu_count()} cores, load average "
              f"{load:.1f} at the end); Config {config.rows}x{config.cols}; written by "
              f"`tridsa bench sim{' --quick' if quick else ''}{' --flags' if flags else ''}`")
    text = table + f"\n\n({source})"
    if flag_rows:
        text += "\n\n" + markdown_table(flag_rows, [("build", "fast Verilator model built with"), ("cycles", "cycles"),
                                                   ("cycles_per_s", "cycles/s")], digits=0)
    print(text)
    publish_image(line_plot(f"{out_dir}/sim.png", series, xlabel="simulated cycles per call",
                            ylabel="wall seconds per call", title="Simulation speed per backend (int8 matmuls)",
                            logx=True, logy=True))
    write_json(f"{out_dir}/sim.json", {"config": config.to_dict(), "rows": rows, "flags": flag_rows, "source": source})
    write_section("bench-sim", text)
    return {"rows": rows, "flags": flag_rows}
