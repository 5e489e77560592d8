"""``tridsa bench cycles``: the cycle model (the golden backend's cycles) against the RTL cycle counter.

Runs a sweep of single-instruction Programs on a gateware backend and on golden (bit for bit the same
memory) and reports, per engine, the distribution of the model's error ``model / RTL - 1``: samples,
how many are exact, mean and largest ``|error|`` and how many are within the 2% of issue 15. The sweep:

* **GATHER**: tables of 32, 64 and 128 int8 elements (those whose row fits a cache line), pooling 1, 2,
  3, 4, 8, 27 and 100, each as a sum, a narrow (int8) sum, a max (pooling 1: a copy), a weighted sum
  and a sum over uniform instead of Zipf(1.05) indices; plus mean, ragged bags with empty ones and an
  int32 table. ``--quick``: one seed, otherwise two;
* **GEMM**: tiles of the zoo's layers (conv, attention, LSTM step, INT4, an int32 output) and, per seed,
  100 GEMMs of random shapes (M up to 64, K up to 256, N up to 128, INT8 or INT4, an int8, int32 or int4
  output, batch 1-8: the int32 outputs with a short K are bound by the memory port);
* **GEMM stream**: per seed, 20 Programs of two to four random GEMMs one after another (with
  ``Config.overlap`` each hides the previous one's drain as far as the port and the requant unit allow);
* **RNG** and **SKETCH**: a few sizes;
* **GEMM+GATHER**: Programs of a GEMM and a GATHER side by side (``Config.overlap``), in both orders, and
  of GEMM, GATHER, GEMM and GATHER, GEMM, GATHER (the port shared: ``side_speeds`` in the cycle model).

Writes ``cycles.json`` (every sample), ``cycles.md`` and ``cycle_model_errors.png`` (histogram of the
errors per engine); ``--publish`` puts the table into docs (section ``bench-cycles``) and the plot into
docs/img.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from tridsa import Accelerator, Config, Requant
from tridsa.spec.gather_layout import line_words
from tridsa.sw.builder import ProblemTooLarge, ProgramBuilder
from tridsa.sw.dlrm_traffic import zipf_indices
from tridsa.sw.gather_ops import emit_gather
from tridsa.sw.gemm_ops import emit_gemm_batch
from tridsa.sw.sketch_ops import emit_rng, emit_sketch

from .report import Progress, markdown_table, publish_image, write_json, write_section

__all__ = ["run", "samples", "BOUND"]

#: The issue's bound on the cycle model's error, per sampled instruction.
BOUND = 0.02


def _gather(rng, rows, dim, bags, pooling, alpha=1.05, dtype=np.int8, weighted=False, ragged=False, **kw):
    """A GATHER of ``bags`` bags of ``pooling`` Zipf(``alpha``) rows (``ragged``: 0 to ``2 * pooling`` rows)."""
    table = rng.integers(-128, 128, (rows, dim)).astype(dtype)
    lengths = rng.integers(0, 2 * pooling + 1, bags) if ragged else np.full(bags, pooling)
    indices = zipf_indices(rows, int(lengths.sum()), alpha, rng)
    weights = rng.integers(-100, 100, indices.size) if weighted else None
    return lambda b: emit_gather(b, table, indices, np.cumsum(lengths) - lengths, per_sample_weights=weights, **kw)


def _gemm(rng, m, k, n, precision="int8", batch=1, out="int8"):
    lo, hi = (-8, 8) if precision == "int4" else (-128, 128)
    a, b = rng.integers(lo, hi, (batch, m, k)), rng.integers(lo, hi, (batch, k, n))
    return lambda builder: emit_gemm_batch(builder, a, b, requant=None if out == "int32" else Requant(1 << 20, 24),
                                           precision=precision, out_dtype=out)


def samples(config: Config, seeds=(1, 2)) -> list:
    """``(engine, name, emit)`` of the sweep (the module docstring) that fits ``config``."""
    out = []
    line_bytes = line_words(config) * config.mem_width
    rows = max(16, min(1500, config.mem_bytes // 4 // line_bytes))
    for seed in seeds:
        rng = np.random.default_rng(seed)
        for dim in (d for d in (32, 64, 128) if d <= line_bytes):
            for pooling in (1, 2, 3, 4, 8, 27, 100):
                bags = max(8, 384 // pooling)
                variants = (("sum", {}), ("narrow", {"out_shift": 6}),
                            ("copy", {"mode": "copy"}) if pooling == 1 else ("max", {"mode": "max"}),
                            ("weighted", {"weighted": True}), ("uniform", {"alpha": 0.0}))
                for label, kw in variants:
                    out.append(("GATHER", f"s{seed} dim {dim} pooling {pooling} {label}",
                                _gather(rng, rows, dim, bags, pooling, **kw)))
        dim = min(128, line_bytes)
        out += [("GATHER", f"s{seed} dim {dim} pooling 6 mean", _gather(rng, rows, dim, 32, 6, mode="mean")),
                ("GATHER", f"s{seed} dim 32 pooling 2 mean", _gather(rng, rows, 32, 16, 2, mode="mean")),
                ("GATHER", f"s{seed} dim 64 ragged", _gather(rng, rows, min(64, line_bytes), 64, 3, ragged=True)),
                ("GATHER", f"s{seed} dim {dim} ragged pooling 1", _gather(rng, rows, dim, 64, 1, ragged=True)),
                ("GATHER", f"s{seed} int32 dim 16", _gather(rng, rows, 16, 64, 4, dtype=np.int32)),
                ("GATHER", f"s{seed} int32 dim {dim // 4}", _gather(rng, rows, dim // 4, 32, 8, dtype=np.int32))]
    rng = np.random.default_rng(seeds[0])
    out += [("GEMM", "3x3 conv tile 64x576x64", _gemm(rng, 64, 576, 64)),
            ("GEMM", "7x7 stage 49x512x64", _gemm(rng, 49, 512, 64)),
            ("GEMM", "attention 6x(128x64x128) int32", _gemm(rng, 128, 64, 128, batch=6, out="int32")),
            ("GEMM", "LSTM step 8x1024x256", _gemm(rng, 8, 1024, 256)),
            ("GEMM", "int4 64x256x64", _gemm(rng, 64, 256, 64, "int4")),
            ("GEMM", "DLRM bottom 32x13x64", _gemm(rng, 32, 13, 64)),
            ("RNG", "256 words", lambda b: emit_rng(b, (1, 2), (0, 0, 0, 0), 256)),
            ("RNG", "4096 words", lambda b: emit_rng(b, (1, 2), (0, 0, 0, 0), 4096)),
            ("SKETCH", "64x256 k=16", lambda b: emit_sketch(b, rng.integers(-128, 128, (64, 256)), 16, (1, 2))),
            ("SKETCH", "32x64 k=40 gaussian",
             lambda b: emit_sketch(b, rng.integers(-128, 128, (32, 64)), 40, (1, 2), dist="gaussian"))]
    for seed in seeds:
        out += _random_gemms(np.random.default_rng(seed), 100, 20)
    if config.overlap and {"gemm", "gather"} <= set(config.engines):
        out += _side_by_side(rng, config, rows, min(128, line_bytes))
    return out


def _random_gemms(rng, count, streams) -> list:
    """``count`` GEMMs of random shapes and modes, then ``streams`` Programs of two to four of them."""
    def draw():
        m = int(rng.choice([1, 2, 4, 8, 13, 16, 24, 32, 49, 64]))
        k = int(rng.choice([1, 3, 8, 13, 16, 24, 32, 48, 64, 128, 256]))
        n = int(rng.choice([1, 8, 10, 16, 24, 32, 64, 96, 128]))
        precision = str(rng.choice(["int8", "int4"]))
        output = str(rng.choice(["int8", "int32", "int4"] if precision == "int4" else ["int8", "int32"]))
        batch = int(rng.choice([1, 1, 2, 4, 8]))
        return f"{m}x{k}x{n} {precision}->{output} batch {batch}", _gemm(rng, m, k, n, precision, batch, output)
    out = [("GEMM", "random " + label, emit) for label, emit in (draw() for _ in range(count))]
    for _ in range(streams):
        gemms = [draw() for _ in range(int(rng.integers(2, 5)))]
        out.append(("GEMM stream", ", ".join(label for label, _ in gemms),
                    lambda b, emits=[emit for _, emit in gemms]: [emit(b) for emit in emits]))
    return out


def _side_by_side(rng, config, rows, dim) -> list:
    """GEMMs and GATHERs of every port demand (a GEMM moves about half a word per cycle, a GATHER of
    misses one, of a narrow output half a word) in Programs where they run side by side."""
    gemms = ((8, 64, 8), (32, 256, 32), (64, 64, 64), (16, 1024, 64))
    gathers = (dict(bags=64, pooling=4), dict(bags=128, pooling=1), dict(bags=32, pooling=10, alpha=0.0),
               dict(bags=16, pooling=27, out_shift=6), dict(bags=200, pooling=2))
    out = []
    for i, shape in enumerate(gemms):
        for j, kw in enumerate(gathers):
            order = ("GEMM", "GATHER") if (i + j) % 2 else ("GATHER", "GEMM")
            if i + j >= 6:
                order = order + order[:1]
            emits = {"GEMM": _gemm(rng, *shape), "GATHER": _gather(rng, rows, dim, **kw)}
            label = ", ".join(f"GEMM {'x'.join(map(str, shape))}" if op == "GEMM" else f"GATHER pooling {kw['pooling']}"
                              for op in order)
            out.append(("GEMM+GATHER", label, lambda b, order=order, emits=emits: [emits[op](b) for op in order]))
    return out


def _distribution(engine, points) -> dict:
    errors = np.abs([p["error"] for p in points])
    return {"engine": engine, "samples": len(points), "exact": int(sum(p["model"] == p["rtl"] for p in points)),
            "mean_abs_error": float(errors.mean()), "max_abs_error": float(errors.max()),
            "within_bound": int((errors <= BOUND).sum())}


def _histogram(path, points, backend):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    engines = sorted({p["engine"] for p in points})
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    try:
        errors = [[100 * p["error"] for p in points if p["engine"] == e] for e in engines]
        edges = np.linspace(-2.625, 2.625, 22)           # 0.25% bins, one centred on 0
        ax.hist([np.clip(e, edges[0], edges[-1]) for e in errors], bins=edges, stacked=True,
                label=[f"{e} ({len(x)})" for e, x in zip(engines, errors)])
        for x in (-100 * BOUND, 100 * BOUND):
            ax.axvline(x, linestyle="--", linewidth=1, color="gray")
        ax.set_xlabel("cycle model error, model / RTL - 1 (%; beyond +-2.6% drawn at the edge)")
        ax.set_ylabel("sampled Programs")
        ax.set_title(f"cycle model vs RTL cycle counter ({backend})")
        ax.grid(True, alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)
    return path


def run(config: Config, backend: str = "verilator", out_dir="benchmarks/out", quick=False, publish=False) -> dict:
    """Measure the sweep, print the table, write ``cycles.json``, ``cycles.md`` and the histogram."""
    if backend == "golden":
        raise ValueError("bench cycles compares the golden cycle model with a gateware backend: "
                         "use amaranth, verilator or icarus")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    gate, golden = Accelerator(backend, config), Accelerator("golden", config)
    cases = samples(config, seeds=(1,) if quick else (1, 2))
    points, skipped = [], []
    with Progress(len(cases), f"bench cycles ({backend})") as bar:
        for engine, name, emit in cases:
            bar.step(f"{engine} {name}")
            builder = ProgramBuilder(config)
            try:
                emit(builder)
            except ProblemTooLarge:             # a sample larger than this Config's memory
                skipped.append(f"{engine} {name}")
                continue
            program = builder.build()
            measured, model = gate.run(program), golden.run(program)
            if not np.array_equal(measured.memory, model.memory):
                raise AssertionError(f"{engine} {name}: the {backend} result differs from golden")
            rtl, cycles = measured.counters["cycles"], model.counters["cycles"]
            points.append({"engine": engine, "name": name, "rtl": rtl, "model": cycles, "error": cycles / rtl - 1})
    table = [_distribution(e, [p for p in points if p["engine"] == e])
             for e in ("GEMM", "GEMM stream", "GATHER", "RNG", "SKETCH", "GEMM+GATHER")
             if any(p["engine"] == e for p in points)]
    text = (f"`tridsa bench cycles --backend {backend}{' --quick' if quick else ''}`: the cycle model "
            f"(tridsa/sw/cycle_model.py) against the RTL cycle counter on {backend}, {len(points)} sampled "
            f"Programs (one instruction each; GEMM stream: two to four, GEMM+GATHER: two or three), results "
            f"bit-exact; error = model / RTL - 1"
            f"{f' ({len(skipped)} samples larger than the memory skipped)' if skipped else ''}.\n\n"
            + markdown_table([dict(r, mean_abs_error=f"{100 * r['mean_abs_error']:.2f}%",
                                   max_abs_error=f"{100 * r['max_abs_error']:.2f}%") for r in table],
                             [("engine", "engine"), ("samples", "samples"), ("exact", "exact"),
                              ("mean_abs_error", "mean abs error"), ("max_abs_error", "max abs error"),
                              ("within_bound", f"within {100 * BOUND:.0f}%")]))
    print(text)
    write_json(out_dir / "cycles.json", {"config": config.to_dict(), "backend": backend, "bound": BOUND,
                                         "summary": table, "samples": points, "skipped": skipped})
    (out_dir / "cycles.md").write_text(text + "\n")
    plot = _histogram(out_dir / "cycle_model_errors.png", points, backend)
    if publish:
        write_section("bench-cycles", text)
        publish_image(plot)
    return {"summary": table, "samples": points, "skipped": skipped}
