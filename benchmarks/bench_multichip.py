"""``tridsa bench multichip``: the DLRM step sharded over N accelerators (:mod:`tridsa.sw.multichip`), checked
bit for bit against one chip, and a scaling model for 1-64 chips.

Measured (on ``backend``, one Ray actor per chip): per-chip cycles of the gather (its embedding shards
over the whole batch) and of the MLPs (its slice of the batch), MACs, lookups, bytes read by the gather
engine, embedding bytes held, and the all-to-all volume of pooled embeddings (and of the input
distribution of indices). ``bit_exact``: the sharded logits and pooled embeddings equal the single-chip
run's.

Scaling model (strong scaling, the same global batch): for N chips the planner's shards give every
chip its lookups and samples (:func:`tridsa.sw.multichip.traffic`); its cycles are predicted by
straight lines fitted to the measured chips (gather cycles vs lookups, MLP cycles vs samples: the
single-chip run and every chip of the sharded run are the points), and a step takes
``max over chips (gather + MLP cycles) + max over chips (all-to-all bytes sent or received) / link``
with ``link_bytes_per_cycle`` an assumption of the model (default 16 B/cycle per chip, e.g. a
3.2 GB/s link at a 200 MHz chip clock). Cycles are RTL counters on a gateware backend and the cycle
model's (:mod:`tridsa.sw.cycle_model`) on golden.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from tridsa.sw.cluster import connect
from tridsa.spec.config import Config
from tridsa.sw.multichip import dlrm_plan, run_sharded, run_single, traffic
from tridsa.sw.workloads.dlrm import load_dlrm, synthetic_ctr

from .report import Progress, line_plot, markdown_table, publish_image, write_json, write_section

__all__ = ["run", "fit_line", "SCALING_CHIPS"]

SCALING_CHIPS = (1, 2, 4, 8, 16, 32, 64)


def fit_line(xs, ys):
    """``(intercept, slope)`` of the least-squares line through ``(xs, ys)``; through the origin when every
    ``x`` is the same (one distinct point fixes only a slope)."""
    xs, ys = np.asarray(xs, np.float64), np.asarray(ys, np.float64)
    if len(set(xs.tolist())) < 2:
        return 0.0, float(ys.sum() / xs.sum()) if xs.sum() else 0.0
    slope, intercept = np.polyfit(xs, ys, 1)
    return float(intercept), float(slope)


def _scaling(model, sparse, batch, dim, strategy, points, link):
    """Modelled step for every chip count of :data:`SCALING_CHIPS` that fits the batch."""
    gather = fit_line([p["lookups"] for p in points if p["lookups"]],
                      [p["gather_cycles"] for p in points if p["lookups"]])
    mlp = fit_line([p["samples"] for p in points], [p["mlp_cycles"] for p in points])
    rows = []
    for n in SCALING_CHIPS:
        if n > batch:
            break
        moved = traffic(dlrm_plan(model, sparse, n, strategy), sparse, batch, dim)
        a2a = moved["all_to_all"]
        link_bytes = int(max(np.max(a2a.sum(axis=1)), np.max(a2a.sum(axis=0))))
        compute = max((gather[0] + gather[1] * lk if lk else 0.0) + mlp[0] + mlp[1] * s
                      for lk, s in zip(moved["lookups"], moved["samples"]))
        step = compute + link_bytes / link
        rows.append(dict(chips=n, compute_cycles=compute, all_to_all_bytes=int(a2a.sum()),
                         busiest_link_bytes=link_bytes, all_to_all_cycles=link_bytes / link, step_cycles=step,
                         samples_per_kcycle=1000 * batch / step))
    fit = dict(gather_cycles=dict(intercept=gather[0], per_lookup=gather[1]),
               mlp_cycles=dict(intercept=mlp[0], per_sample=mlp[1]))
    return rows, fit


def run(config: Config, backend: str = "verilator", out_dir="benchmarks/out", chips: int = 2,
        strategy: str = "auto", batch: int = 64, link_bytes_per_cycle: float = 16.0, address=None,
        seed: int = 0, publish: bool = False) -> dict:
    """Measure and model (see the module docstring); ``publish`` also writes the tables into the docs'
    ``bench-multichip`` section and the plot into docs/img."""
    if link_bytes_per_cycle <= 0:
        raise ValueError(f"link_bytes_per_cycle={link_bytes_per_cycle} is invalid: must be > 0")
    out_dir = Path(out_dir)
    connect(address)                     # an unreachable cluster fails here, before any work
    model = load_dlrm("int8")
    dense, sparse, _ = synthetic_ctr(batch, seed)
    with Progress(2, "multichip") as bar:
        bar.step(f"1 chip on {backend}")
        logits, pooled, single = run_single(model, dense, sparse, backend, config)
        bar.step(f"{chips} chips on {backend} (Ray actors)")
        result = run_sharded(model, dense, sparse, chips, backend, config, strategy, address=address)
    bit_exact = bool(np.array_equal(result.logits, logits) and np.array_equal(result.pooled, pooled))
    dim = pooled.shape[2]
    points = [dict(lookups=sum(len(i) for i, _ in sparse), samples=batch, gather_cycles=single["gather_cycles"],
                   mlp_cycles=single["mlp_cycles"])]
    points += [dict(lookups=c["lookups"], samples=c["samples"], gather_cycles=c["gather_cycles"],
                    mlp_cycles=c["mlp_cycles"]) for c in result.chips]
    source = "the cycle model (sw/cycle_model.py)" if backend == "golden" else f"RTL counters on {backend}"
    scaling, fit = _scaling(model, sparse, batch, dim, strategy, points, link_bytes_per_cycle)

    source_line = (f"`tridsa bench multichip --chips {chips} --backend {backend} --strategy {strategy} --batch {batch}`"
                   f" ({source}; scaling: model)")
    text = "\n".join([
        f"DLRM on {chips} chips ({backend}, {strategy} sharding, batch {batch}): bit-exact with one chip: "
        f"{'yes' if bit_exact else 'NO'}; one chip: {single['cycles']} cycles; {source_line}", "",
        markdown_table(result.chips, ["chip", "samples", "shards", "embedding_bytes", "lookups", "gather_cycles",
                                      "mlp_cycles", "cycles", "macs", "gather_bytes_read", "all_to_all_sent",
                                      "all_to_all_received"]), "",
        f"All-to-all of pooled embeddings: {result.all_to_all_bytes} bytes; input distribution (indices, "
        f"offsets): {int(result.input_dist.sum())} bytes.", "",
        f"Scaling model ({link_bytes_per_cycle:g} B/cycle per chip link, cycles fitted to the measured chips):", "",
        markdown_table(scaling, ["chips", "compute_cycles", "all_to_all_bytes", "busiest_link_bytes",
                                 "all_to_all_cycles", "step_cycles", "samples_per_kcycle"], digits=1)])
    print(text)
    xs = [r["chips"] for r in scaling]
    series = {"step": (xs, [r["step_cycles"] for r in scaling]),
              "compute (busiest chip)": (xs, [r["compute_cycles"] for r in scaling]),
              "all-to-all (busiest link / bandwidth)": (xs, [r["all_to_all_cycles"] for r in scaling])}
    plot = line_plot(out_dir / "multichip_scaling.png", series, xlabel="chips", ylabel="cycles per step",
                     logx=True, title=f"DLRM step, batch {batch}, {strategy} sharding, "
                     f"{link_bytes_per_cycle:g} B/cycle links (model)")
    report = dict(
        produced_by=f"tridsa bench multichip --chips {chips} --backend {backend} --strategy {strategy} --batch {batch} "
                    f"--link-bandwidth {link_bytes_per_cycle:g} (per-chip figures: "
                    f"{source}; scaling: model)",
        backend=backend, config=config.to_dict(), chips=chips, strategy=strategy, batch=batch, seed=seed,
        bit_exact=bit_exact, single_chip=single, per_chip=result.chips,
        all_to_all_bytes=result.all_to_all_bytes, all_to_all_matrix=result.all_to_all,
        input_dist_bytes=int(result.input_dist.sum()), plan=result.plan.describe(),
        scaling=dict(link_bytes_per_cycle=link_bytes_per_cycle, fit=fit, points=scaling), plots=[str(plot)])
    write_json(out_dir / "multichip.json", report)
    if publish:
        write_section("bench-multichip", text)
        publish_image(plot)
    report["ok"] = bit_exact
    return report
