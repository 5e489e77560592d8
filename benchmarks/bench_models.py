"""``tridsa bench models``: per-layer cycles, MAC utilization, bytes moved and arithmetic intensity of
the demo's workloads (CNN, Transformer, LSTM, DLRM), every layer checked against the golden model, and
how their MAC utilization grows with the batch.

Three tables:

* per workload and precision (INT8, INT4/INT8) at the demo's batch: accuracy (golden model, whole
  held-out split), layers, cycles, MACs, bytes, MAC utilization; for DLRM the embedding stage's cycles
  against the gather engine's memory-bound limit: the cycles the memory port needs to move the table
  rows its lookups need (every lookup's row, hit or miss) at ``Config.mem_width`` bytes per cycle;
  index, offset and output words are overhead on top of that;
* per layer of those runs;
* MAC utilization of the INT4/INT8 models against the batch (``batches``): the layers of these models
  are small and each depends on the one before (with host work between them), so every GEMM pays the
  array's fill and drain; a bigger batch is a bigger M per GEMM.

``--publish`` writes the first and last tables into README.md and docs (sections ``bench-models`` and
``bench-models-batch``), the per-layer table into docs (``bench-models-layers``) and the plots into docs/img.
"""
from __future__ import annotations

from pathlib import Path

from tridsa.spec.config import Config
from tridsa.sw.demo import PRECISIONS, WORKLOADS, plot_layers, profile, utilization
from tridsa.sw.driver import Accelerator
from tridsa.sw.profile import CheckedAccelerator

from .report import line_plot, markdown_table, publish_image, write_json, write_section

__all__ = ["run", "BATCHES"]

#: Batches of the utilization-against-batch sweep.
BATCHES = (1, 2, 4, 8, 16, 32)


def _summary(name, label, records, config) -> dict:
    entry = {"workload": name, "precision": label, "batch": WORKLOADS[name].batch, "layers": len(records),
             "cycles": sum(r.cycles for r in records), "macs": sum(r.macs for r in records),
             "bytes": sum(r.bytes_moved for r in records), "utilization": utilization(records)}
    gathers = [r for r in records if r.op == "embedding_bag"]
    if gathers:
        entry["embedding_cycles"] = sum(r.cycles for r in gathers)
        entry["embedding_of_memory_bound"] = sum(r.lookup_bytes for r in gathers) / config.mem_width \
            / entry["embedding_cycles"]
    return entry


def run(config: Config, backend: str = "verilator", out_dir="benchmarks/out", names=None, publish=False,
        batches=BATCHES, accuracy=True) -> dict:
    if backend == "golden":
        raise ValueError("bench models measures cycles: pick a gateware backend (verilator, icarus, amaranth); "
                         "golden has no clock")
    names = list(names or WORKLOADS)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    golden = Accelerator("golden", config)
    checked = CheckedAccelerator(backend, config)
    rows, summary, sweep, shown = [], [], [], []
    for name in names:
        wl = WORKLOADS[name]
        inputs, labels = wl.data()
        scores = wl.accuracy(golden, inputs, labels) if accuracy else {}
        for precision, label in PRECISIONS.items():
            records = profile(checked, name, golden, inputs, precision=precision)
            if precision == "mixed":
                mixed = records                 # the sweep's point at the demo batch
                shown += records
            for r in records:
                rows.append({"workload": name, "precision": label, "op": r.op, "shape": r.shape, "macs": r.macs,
                             "cycles": r.cycles, "utilization": r.utilization, "bytes": r.bytes_moved,
                             "intensity": r.intensity})
            entry = _summary(name, label, records, config)
            if scores:
                entry.update(metric=wl.metric, float=scores["float"], quantized=scores[label])
            summary.append(entry)
        for batch in batches:
            records = mixed if batch == wl.batch else profile(checked, name, golden, inputs, batch=batch)
            sweep.append({"workload": name, "batch": batch, "cycles": sum(r.cycles for r in records),
                          "utilization": utilization(records)})
    source = f"RTL cycle counter on {backend}, every layer bit-exact with golden"
    head = (f"`tridsa bench models --backend {backend}`: a {config.rows}x{config.cols} array, {config.mem_width} "
            f"B/cycle port; cycles: {source}; accuracy: golden model on the whole held-out split.\n\n")
    table = head + markdown_table(summary, [
        "workload", "precision", "metric", ("float", "float model"), ("quantized", "quantized model"), "batch",
        "layers", "cycles", ("utilization", "MAC utilization"), ("embedding_cycles", "embedding cycles"),
        ("embedding_of_memory_bound", "embeddings / memory bound")])
    layers = (f"`tridsa bench models --backend {backend}`, per layer (batch as above; cycles: {source}).\n\n"
              + markdown_table(rows, ["workload", "precision", "op", "shape", "macs", "cycles", "utilization",
                                      "bytes", "intensity"]))
    by_batch = _batch_table(sweep, names, batches, backend, source)
    print(table + "\n\n## Per layer\n\n" + layers + "\n\n## MAC utilization against the batch\n\n" + by_batch)
    plot = out_dir / "models_layers.png"
    plot_layers(shown, config, plot)
    batch_plot = line_plot(
        out_dir / "models_batch.png",
        {name: ([s["batch"] for s in sweep if s["workload"] == name],
                [s["utilization"] * 100 for s in sweep if s["workload"] == name]) for name in names},
        xlabel="batch (samples per forward pass)", ylabel="MAC utilization (%)", logx=True,
        title=f"INT4/INT8 models on the {config.rows}x{config.cols} array ({backend} RTL counters)",
        hlines=[(90, "90%")])
    write_json(out_dir / "models.json", {"config": config.to_dict(), "backend": backend, "cycles_from": source,
                                        "summary": summary, "layers": rows, "batch_sweep": sweep})
    if publish:
        write_section("bench-models", table)
        write_section("bench-models-layers", layers)
        write_section("bench-models-batch", by_batch)
        publish_image(plot)
        publish_image(batch_plot)
    return {"summary": summary, "layers": rows, "batch_sweep": sweep, "plots": [str(plot), str(batch_plot)]}


def _batch_table(sweep, names, batches, backend, source) -> str:
    rows = []
    for name in names:
        row = {"workload": name, "demo batch": WORKLOADS[name].batch}
        row.update({f"batch {b}": s["utilization"] for b in batches for s in sweep
                    if s["workload"] == name and s["batch"] == b})
        rows.append(row)
    head = (f"`tridsa bench models --backend {backend}`: MAC utilization of the INT4/INT8 models against the "
            f"batch (cycles: {source}).\n\n")
    return head + markdown_table(rows, ["workload", "demo batch"] + [f"batch {b}" for b in batches])
