"""GEMM engine benchmark: cycles and MAC utilization of matmuls and a ResNet-style conv stack.

Utilization is ``MACs / (peak * cycles)`` against the precision's own peak (``rows * cols`` MACs per
cycle in INT8, twice that in INT4); ``macs_per_cycle`` makes the INT4/INT8 throughput ratio visible.
``cycles`` counts from the first instruction popped until ``halted`` (dispatch, setup, fill and drain
included). The engine counters split it: ``gemm_feed`` cycles the array receives operands,
``gemm_busy`` cycles the engine runs, so ``busy - feed`` is fill/drain/stall inside the engine and
``cycles - busy`` is dispatch outside it.

In stream mode (``instructions`` > 1, ``tridsa bench gemm --stream N``) every matmul shape runs as one
Program of N independent same-size GEMM instructions (kind ``stream``), each requantized to its own
precision as a layer feeding the next would be (the memory image is checked against the golden model):
consecutive instructions overlap (the next one's setup and reads run while the previous one drains), so
the fixed cost is paid about once. The stream table is published in README.md (section
``bench-gemm-stream``).

Every result is checked bit for bit (matmuls against NumPy, convolutions against the golden backend).
Sizes derive from the Config (multiples of the array size ``S = max(rows, cols)``), so the same sweep
scales to any array. Run it with ``tridsa bench gemm`` or ``python -m benchmarks.bench_gemm``.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from tridsa import Accelerator, Config, Requant
from tridsa.sw.builder import ProblemTooLarge, ProgramBuilder
from tridsa.sw.gemm_ops import emit_gemm

from .report import Progress, line_plot, markdown_table, publish_image, write_json, write_section

__all__ = ["run", "matmul_shapes", "conv_layers", "parse_shapes", "published_table", "TARGET_UTILIZATION",
           "TARGET_INT4_RATIO", "BATCH"]

TARGET_UTILIZATION = 0.95     # compute-bound INT8 matmuls
TARGET_INT4_RATIO = 1.95      # INT4 over INT8 MACs per cycle on the same shape
#: Problems of the batched case: one batched GEMM instruction against as many separate matmul calls.
BATCH = 32

_RANGE = {"int8": (-128, 127), "int4": (-8, 7)}


def matmul_shapes(config: Config, quick: bool = False) -> list:
    """``(M, K, N)`` of the sweep: square sizes 1x..16x the array (32x in the full sweep) plus
    deep-K and wide-output rectangles; compute-bound shapes have every dimension >= 4x the array."""
    s = max(config.rows, config.cols)
    square = (1, 4, 8) if quick else (1, 2, 4, 8, 16, 32)
    shapes = [(f * s,) * 3 for f in square]
    if quick:
        shapes.append((4 * s, 16 * s, 4 * s))
    else:
        shapes += [(4 * s, 16 * s, 4 * s), (16 * s, 4 * s, 16 * s), (8 * s, 32 * s, 8 * s)]
    return shapes


def conv_layers(config: Config, quick: bool = False) -> list:
    """A ResNet-style stack on a small image: ``(name, cin, cout, kernel, stride, padding)``.

    Channels are ``2 * cols`` and ``4 * cols``; the input is ``1 x 2*cols x 8 x 8``. Each layer
    consumes the previous layer's requantized (ReLU) output.
    """
    c = 2 * config.cols
    layers = [("3x3", c, c, 3, 1, 1), ("1x1 expand", c, 2 * c, 1, 1, 0),
              ("3x3 s2", 2 * c, 2 * c, 3, 2, 1), ("1x1 expand", 2 * c, 4 * c, 1, 1, 0)]
    return layers[:2] if quick else layers


def parse_shapes(text: str) -> list:
    """``"64x64x64,32x128x32"`` -> ``[(64, 64, 64), (32, 128, 32)]`` (M x K x N); ValueError if malformed."""
    shapes = []
    for item in text.split(","):
        parts = item.strip().lower().split("x")
        try:
            dims = tuple(int(p) for p in parts)
        except ValueError:
            dims = ()
        if len(dims) != 3 or min(dims) < 1:
            raise ValueError(f"--shapes item {item.strip()!r} is invalid: expected MxKxN with positive integers, "
                             f"e.g. 64x64x64")
        shapes.append(dims)
    return shapes


def _random(rng, precision, shape):
    lo, hi = _RANGE[precision]
    return rng.integers(lo, hi + 1, size=shape, dtype=np.int64).astype(np.int8)


def _record(acc, kind, name, precision, mkn, exact, wall):
    stats = acc.last_run
    c = stats.counters
    cycles = stats.cycles
    row = dict(kind=kind, name=name, precision=precision, m=mkn[0], k=mkn[1], n=mkn[2], macs=stats.macs,
               peak_macs_per_cycle=stats.peak_macs_per_cycle, cycles=cycles,
               gemm_busy=c.get("gemm_busy"), gemm_feed=c.get("gemm_feed"),
               utilization=stats.utilization,
               macs_per_cycle=stats.macs / cycles if cycles else None,
               exact=bool(exact), wall_seconds=wall, sim_seconds=stats.wall_seconds)
    if cycles and row["gemm_busy"] is not None and row["gemm_feed"] is not None:
        row["engine_overhead"] = row["gemm_busy"] - row["gemm_feed"]     # fill, drain, stalls
        row["dispatch_overhead"] = cycles - row["gemm_busy"]             # queue, dispatch, halt
        # the array needs at least macs / peak feed cycles; anything else means counters are misread
        row["counters_consistent"] = (stats.macs <= row["gemm_feed"] * stats.peak_macs_per_cycle
                                      and row["gemm_feed"] <= row["gemm_busy"] <= cycles)
    if cycles and c.get("mem_reads") is not None and c.get("mem_writes") is not None:
        # the memory port takes one request per cycle: 1.0 means the run is memory-bandwidth bound
        row["mem_port_occupancy"] = (c["mem_reads"] + c["mem_writes"]) / cycles
        row["mem_reads"], row["mem_writes"] = c["mem_reads"], c["mem_writes"]
    row["sim_cycles_per_second"] = cycles / stats.wall_seconds if cycles and stats.wall_seconds else None
    return row


def _run_matmul(acc, rng, precision, shape):
    m, k, n = shape
    a = _random(rng, precision, (m, k))
    b = _random(rng, precision, (k, n))
    start = time.perf_counter()
    y = acc.matmul(a, b, precision=precision)
    wall = time.perf_counter() - start
    exact = np.array_equal(y.astype(np.int64), a.astype(np.int64) @ b.astype(np.int64))
    return _record(acc, "matmul", "x".join(map(str, shape)), precision, shape, exact, wall)


def _run_stream(acc, golden, rng, precision, shape, instructions):
    """``instructions`` independent ``shape`` matmuls, one GEMM instruction each (requantized to
    ``precision``), in one Program; exact if the memory image equals the golden model's."""
    m, k, n = shape
    builder = ProgramBuilder(acc.config)
    for i in range(instructions):
        emit_gemm(builder, _random(rng, precision, (m, k)), _random(rng, precision, (k, n)),
                  requant=Requant.from_scale(2.0 ** -10), precision=precision, out_dtype=precision, name=f"c{i}")
    program = builder.build()
    start = time.perf_counter()
    result = acc.run(program)
    wall = time.perf_counter() - start
    acc._stats(result, program, instructions * m * k * n, acc._peak(precision))
    exact = np.array_equal(result.memory, golden.run(program).memory)
    return _record(acc, "stream", f"{instructions}x " + "x".join(map(str, shape)), precision, shape, exact, wall)


def _run_convs(acc, golden, rng, precision, layers, bar):
    """Run the conv stack layer by layer (each on the previous layer's output); yield one row per layer."""
    hi = _RANGE[precision][1]
    x = _random(rng, precision, (1, layers[0][1], 8, 8))
    for name, cin, cout, kernel, stride, padding in layers:
        label = f"conv{name} {cin}->{cout} {x.shape[2]}x{x.shape[3]}"
        bar.step(f"{precision} {label}")
        w = _random(rng, precision, (cout, cin, kernel, kernel))
        kw = dict(stride=stride, padding=padding)
        acc_ref = golden.conv2d(x, w, precision=precision, **kw).astype(np.float64)
        scale = hi / max(3.0 * float(acc_ref.std()), 1.0)
        rq = Requant.from_scale(scale)
        kw.update(requant=rq, relu=True, precision=precision, out_dtype=precision)
        ref = golden.conv2d(x, w, **kw)
        start = time.perf_counter()
        y = acc.conv2d(x, w, **kw)
        wall = time.perf_counter() - start
        oh, ow = ref.shape[2:]
        mkn = (oh * ow * x.shape[0], cin * kernel * kernel, cout)
        yield _record(acc, "conv", label, precision, mkn, np.array_equal(y, ref), wall)
        x = ref


def _run_batched(acc, rng, config, batch=BATCH):
    """``batch`` INT8 problems of (2 rows) x (3 cols) x cols: one ``matmul_batch`` (one instruction) and
    the same problems as ``batch`` separate ``matmul`` calls (their cycles summed)."""
    m, k, n = 2 * config.rows, 3 * config.cols, config.cols
    a = _random(rng, "int8", (batch, m, k))
    b = _random(rng, "int8", (batch, k, n))
    ref = a.astype(np.int64) @ b.astype(np.int64)
    start = time.perf_counter()
    y = acc.matmul_batch(a, b)
    name = f"{m}x{k}x{n}"
    rows = [_record(acc, "batched", name, "int8", (m, k, n), np.array_equal(y.astype(np.int64), ref),
                    time.perf_counter() - start)]
    rows[0]["batch"] = batch
    cycles = macs = 0
    exact, start = True, time.perf_counter()
    for i in range(batch):
        exact &= np.array_equal(acc.matmul(a[i], b[i]).astype(np.int64), ref[i])
        cycles, macs = cycles + acc.last_run.cycles, macs + acc.last_run.macs
    peak = acc.last_run.peak_macs_per_cycle
    rows.append(dict(kind="separate", name=name, precision="int8", m=m, k=k, n=n, macs=macs, cycles=cycles,
                     peak_macs_per_cycle=peak, utilization=macs / (peak * cycles), macs_per_cycle=macs / cycles,
                     exact=bool(exact), wall_seconds=time.perf_counter() - start, batch=batch))
    return rows


def published_table(rows, config, backend, summary=None) -> str:
    """The README's GEMM table: INT8 and INT4 side by side per case, then the batched comparison, and the
    targets' verdicts of ``summary`` (:func:`_summary`) if given."""
    cases = {}
    for r in rows:
        cases.setdefault((r["kind"], r["name"]), {})[r["precision"]] = r
    lines = [f"Measured by `tridsa bench gemm --publish` on the {backend} backend (RTL cycle counters, "
             f"{config.rows}x{config.cols} array, {config.mem_width}-byte port, latency {config.mem_latency}); "
             "every result bit-exact.", "",
             "| case (matmul: M x K x N) | INT8 cycles | INT8 utilization | INT4 cycles | INT4 MACs/cycle | INT4 / INT8 |",
             "|---|---|---|---|---|---|"]
    labels = {"matmul": "matmul {shape}", "conv": "{name}",
              "batched": "batched: {batch} problems of {shape}, one instruction",
              "separate": "the same as {batch} separate matmul calls", "stream": "stream of {name}"}
    for (kind, name), by in cases.items():
        i8, i4 = by.get("int8"), by.get("int4")
        first = i8 or i4
        cells = [labels[kind].format(name=name, shape=name.replace("x", " x "), batch=first.get("batch")),
                 i8 and i8["cycles"], i8 and f"{100 * i8['utilization']:.1f}%",
                 i4 and i4["cycles"], i4 and f"{i4['macs_per_cycle']:.1f}",
                 f"{i4['macs_per_cycle'] / i8['macs_per_cycle']:.2f}x" if i4 and i8 else None]
        lines.append("| " + " | ".join("" if c is None else str(c) for c in cells) + " |")
    if summary and summary["int8_compute_bound_utilization_min"] is not None:
        verdict = lambda ok: "met" if ok else "**not met**"
        lines += ["", f"Compute-bound shapes (every dimension >= 4x the array): INT8 utilization min "
                  f"{100 * summary['int8_compute_bound_utilization_min']:.1f}% (target >= {TARGET_UTILIZATION:.0%}: "
                  f"{verdict(summary['utilization_target_met'])})"
                  + (f", INT4 / INT8 min {summary['int4_over_int8_compute_bound_min']:.2f}x (target >= "
                     f"{TARGET_INT4_RATIO}x: {verdict(summary['int4_ratio_target_met'])})."
                     if summary["int4_over_int8_compute_bound_min"] is not None else ".")]
    return "\n".join(lines)


def _fit_speed(rows):
    """Marginal simulated cycles per second: slope of a least-squares fit wall = t0 + cycles / speed.

    The simulator's per-run startup (process launch, model load) dominates small runs; the slope
    separates it from the cycle rate. None if there are fewer than 3 timed runs or no spread.
    """
    pts = [(r["cycles"], r["sim_seconds"]) for r in rows if r.get("cycles") and r.get("sim_seconds")]
    if len(pts) < 3:
        return None, None
    x, y = np.array(pts, dtype=np.float64).T
    if np.ptp(x) == 0:
        return None, None
    slope, intercept = np.polyfit(x, y, 1)
    return (1.0 / slope if slope > 0 else None), float(intercept)


def _summary(rows, config, backend):
    s = max(config.rows, config.cols)

    def compute_bound(r):
        return r["kind"] in ("matmul", "stream") and min(r["m"], r["k"], r["n"]) >= 4 * s

    timed = [r for r in rows if r.get("cycles")]
    cb8 = [r["utilization"] for r in timed if compute_bound(r) and r["precision"] == "int8"]
    by_case = {}
    for r in timed:
        by_case.setdefault((r["kind"], r["name"]), {})[r["precision"]] = r["macs_per_cycle"]
    pairs = {case: v["int4"] / v["int8"] for case, v in by_case.items() if "int4" in v and "int8" in v}
    ratios = {f"{kind} {name}": ratio for (kind, name), ratio in pairs.items()}
    cb_ratios = [ratio for (kind, name), ratio in pairs.items()
                 if kind in ("matmul", "stream") and min(map(int, name.split(" ")[-1].split("x"))) >= 4 * s]
    total_cycles = sum(r["cycles"] for r in timed)
    total_sim = sum(r.get("sim_seconds") or 0 for r in timed)
    marginal, startup = _fit_speed(timed)
    summary = dict(
        backend=backend, cases=len(rows), all_exact=all(r["exact"] for r in rows),
        counters_consistent=all(r.get("counters_consistent", True) for r in rows),
        int8_compute_bound_utilization_min=min(cb8) if cb8 else None,
        int8_compute_bound_utilization_mean=float(np.mean(cb8)) if cb8 else None,
        target_utilization=TARGET_UTILIZATION,
        utilization_target_met=(min(cb8) >= TARGET_UTILIZATION) if cb8 else None,
        int4_over_int8=ratios,
        int4_over_int8_compute_bound_min=min(cb_ratios) if cb_ratios else None,
        target_int4_ratio=TARGET_INT4_RATIO,
        int4_ratio_target_met=(min(cb_ratios) >= TARGET_INT4_RATIO) if cb_ratios else None,
        simulated_cycles=total_cycles, simulator_seconds=total_sim,
        sim_cycles_per_second=total_cycles / total_sim if total_sim else None,
        sim_cycles_per_second_marginal=marginal, sim_startup_seconds=startup,
    )
    return summary


_COLUMNS = [("kind", "kind"), ("name", "shape / layer"), ("precision", "prec"), ("macs", "MACs"),
            ("cycles", "cycles"), ("gemm_feed", "feed"), ("engine_overhead", "fill/drain"),
            ("dispatch_overhead", "dispatch"), ("mem_port_occupancy", "mem port"), ("utilization", "util"), ("macs_per_cycle", "MACs/cycle"),
            ("exact", "exact"), ("sim_cycles_per_second", "sim cyc/s")]


def _format_summary(summary, config) -> str:
    def pct(v):
        return "-" if v is None else f"{100 * v:.1f}%"

    def verdict(ok):
        return "n/a" if ok is None else ("met" if ok else "NOT met")

    ratio = summary["int4_over_int8_compute_bound_min"]
    speed = summary["sim_cycles_per_second"]
    marginal = summary["sim_cycles_per_second_marginal"]
    lines = [
        f"Config {config.rows}x{config.cols} array, mem_width {config.mem_width} B, "
        f"mem_latency {config.mem_latency}; backend {summary['backend']}; "
        f"all results bit-exact: {'yes' if summary['all_exact'] else 'NO'}",
        *([] if summary["counters_consistent"] else [
            "- WARNING: engine counters are inconsistent (gemm_feed below MACs/peak or above cycles): the "
            "simulator model and the counter names may come from different source versions"]),
        *(["- the golden backend has no clock: no cycle counts"] if not summary["simulated_cycles"] else []),
        f"- compute-bound INT8 utilization: min {pct(summary['int8_compute_bound_utilization_min'])}, "
        f"mean {pct(summary['int8_compute_bound_utilization_mean'])} "
        f"(target >= {pct(TARGET_UTILIZATION)}: {verdict(summary['utilization_target_met'])})",
        f"- INT4/INT8 MACs per cycle on compute-bound shapes: min "
        f"{'-' if ratio is None else f'{ratio:.3f}x'} (target >= {TARGET_INT4_RATIO}x: "
        f"{verdict(summary['int4_ratio_target_met'])})",
        f"- simulation speed: {summary['simulated_cycles']} cycles in {summary['simulator_seconds']:.1f} s of "
        f"simulator runs = {'-' if speed is None else f'{speed:,.0f}'} cycles/s including startup"
        + ("" if marginal is None else
           f"; {marginal:,.0f} cycles/s marginal (startup {summary['sim_startup_seconds']:.2f} s per run)"),
    ]
    return "\n".join(lines)


def _plots(rows, out_dir: Path, config: Config) -> list:
    paths = []
    series_util, series_mpc = {}, {}
    for kind in ("matmul", "stream", "conv"):
        for precision in ("int8", "int4"):
            pts = sorted((r["macs"], r["utilization"], r["macs_per_cycle"]) for r in rows
                         if r["kind"] == kind and r["precision"] == precision and r.get("cycles"))
            if pts:
                label = f"{kind} {precision.upper()}"
                # conv layers are separate problems: unconnected points; matmuls: a line over size
                style = dict(linestyle="none", marker="s") if kind == "conv" else {}
                series_util[label] = ([p[0] for p in pts], [p[1] for p in pts], style)
                series_mpc[label] = ([p[0] for p in pts], [p[2] for p in pts], style)
    if not series_util:
        return paths
    paths.append(line_plot(out_dir / "gemm_utilization.png", series_util, xlabel="problem size (MACs)",
                           ylabel="utilization of own peak", title="GEMM engine utilization", logx=True,
                           hlines=[(TARGET_UTILIZATION, f"target {TARGET_UTILIZATION:.0%}")]))
    paths.append(line_plot(out_dir / "gemm_macs_per_cycle.png", series_mpc, xlabel="problem size (MACs)",
                           ylabel="MACs per cycle", title="GEMM engine throughput (INT4 peak = 2x INT8)",
                           logx=True, hlines=[(config.peak_macs_int8, "INT8 peak"),
                                              (2 * config.peak_macs_int8, "INT4 peak")]))
    return paths


def run(config: Config | None = None, backend: str = "verilator", out_dir="benchmarks/out", *,
        quick: bool = False, shapes=None, conv: bool = True, precisions=("int8", "int4"), seed: int = 0,
        progress: bool = True, stream=None, instructions: int = 1, publish: bool = False) -> dict:
    """Run the sweep, print the Markdown table and summary, write ``gemm.json`` and PNGs; return the report.

    Parameters
    ----------
    shapes:
        ``(M, K, N)`` tuples replacing :func:`matmul_shapes` (``tridsa bench gemm --shapes``).
    conv:
        Also run the :func:`conv_layers` stack through ``Accelerator.conv2d``.
    precisions:
        Subset of ``("int8", "int4")``; INT4 is skipped on a Config without ``int4``.
    instructions:
        > 1: every shape runs as a Program of that many independent same-size GEMM instructions.
    publish:
        Also write :func:`published_table` into README.md (section ``bench-gemm``).

    The report is ``{"config", "rows", "summary", "skipped", "files"}``; ``summary["all_exact"]`` is
    False if any result differed from the reference.
    """
    config = Config() if config is None else config
    out = sys.stdout if stream is None else stream
    out_dir = Path(out_dir)
    if not isinstance(instructions, int) or instructions < 1:
        raise ValueError(f"instructions={instructions!r} (--stream) is invalid: expected a positive integer")
    bad = [p for p in precisions if p not in _RANGE]
    if bad or not precisions:
        raise ValueError(f"precisions={precisions!r} is invalid: expected a non-empty subset of ('int8', 'int4')")
    skipped = []
    batched = "int8" in precisions and not quick and shapes is None       # part of the default sweep
    if not config.int4 and "int4" in precisions:
        precisions = tuple(p for p in precisions if p != "int4")
        skipped.append("int4: the Config has int4=False")
    shapes = matmul_shapes(config, quick) if shapes is None else [tuple(map(int, s)) for s in shapes]
    layers = conv_layers(config, quick) if conv else []

    acc = Accelerator(backend, config)
    golden = Accelerator("golden", config)
    rng = np.random.default_rng(seed)
    rows = []
    total = len(precisions) * (len(shapes) + len(layers)) + batched
    with Progress(total, f"bench gemm ({backend})", enabled=progress) as bar:
        for precision in precisions:
            for shape in shapes:
                bar.step(f"matmul {precision} {'x'.join(map(str, shape))}")
                try:
                    rows.append(_run_matmul(acc, rng, precision, shape) if instructions == 1
                                else _run_stream(acc, golden, rng, precision, shape, instructions))
                except ProblemTooLarge:
                    skipped.append(f"matmul {precision} {'x'.join(map(str, shape))}: does not fit mem_depth")
            if layers:
                try:
                    rows.extend(_run_convs(acc, golden, rng, precision, layers, bar))
                except ProblemTooLarge:
                    skipped.append(f"conv stack {precision}: does not fit mem_depth")
        if batched:
            bar.step(f"batched {BATCH} problems")
            rows.extend(_run_batched(acc, rng, config))
    summary = _summary(rows, config, backend)
    files = [str(p) for p in _plots(rows, out_dir, config)]
    report = dict(benchmark="gemm", config=config.to_dict(), quick=quick, seed=seed, rows=rows,
                  summary=summary, skipped=skipped, files=files)
    json_path = out_dir / "gemm.json"
    report["files"] = [str(json_path)] + files
    write_json(json_path, report)
    print(f"## GEMM benchmark\n\n{markdown_table(rows, _COLUMNS)}\n", file=out)
    print(_format_summary(summary, config), file=out)
    if instructions > 1 and backend != "golden":        # RTL figures only
        command = (f"tridsa bench gemm --stream {instructions} --shapes "
                   + ",".join("x".join(map(str, s)) for s in shapes) + " --no-conv")
        write_section("bench-gemm-stream", f"{markdown_table(rows, _COLUMNS)}\n\n{_format_summary(summary, config)}\n\n"
                      f"(RTL cycle counter on {backend}; written by `{command}`)")
    for item in skipped:
        print(f"- skipped {item}", file=out)
    print(f"- wrote {', '.join(report['files'])}", file=out)
    if publish:
        changed = write_section("bench-gemm", published_table(rows, config, backend, summary))
        changed += [publish_image(p) for p in files if p.endswith("gemm_utilization.png")]
        print(f"- published: {', '.join(map(str, changed))}", file=out)
    return report


if __name__ == "__main__":
    import argparse
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="verilator")
    parser.add_argument("--out", default="benchmarks/out")
    parser.add_argument("--quick", action="store_true")
    ns = parser.parse_args()
    run(Config(), ns.backend, ns.out, quick=ns.quick)
