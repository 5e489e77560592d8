"""``tridsa bench models``: per-layer cycles, MAC utilization, bytes moved and arithmetic intensity of
the real workloads (CNN, Transformer, LSTM, DLRM), every layer checked against the golden model.

The DLRM embedding stage is compared with the gather engine's memory-bound limit: the cycles the
memory port needs to move the table rows its lookups need (every lookup's row, hit or miss) at
``Config.mem_width`` bytes per cycle; index, offset and output words are overhead on top of that.
"""
from __future__ import annotations

from pathlib import Path

from tridsa.spec.config import Config
from tridsa.sw.demo import WORKLOADS, plot_layers, profile, utilization
from tridsa.sw.driver import Accelerator
from tridsa.sw.profile import CheckedAccelerator

from .report import markdown_table, write_json

__all__ = ["run"]


def run(config: Config, backend: str = "verilator", out_dir="benchmarks/out", names=None) -> dict:
    if backend == "golden":
        raise ValueError("bench models measures cycles: pick a gateware backend (verilator, icarus, amaranth); "
                         "golden has no clock")
    out_dir = Path(out_dir)
    golden = Accelerator("golden", config)
    checked = CheckedAccelerator(backend, config)
    rows, summary = [], []
    for name in names or WORKLOADS:
        records = profile(checked, name, golden)
        for r in records:
            rows.append({"workload": name, "op": r.op, "shape": r.shape, "macs": r.macs, "cycles": r.cycles,
                         "utilization": r.utilization, "bytes": r.bytes_moved, "intensity": r.intensity})
        cycles = sum(r.cycles for r in records)
        entry = {"workload": name, "layers": len(records), "cycles": cycles, "macs": sum(r.macs for r in records),
                 "bytes": sum(r.bytes_moved for r in records), "utilization": utilization(records)}
        gathers = [r for r in records if r.op == "embedding_bag"]
        if gathers:
            limit = sum(r.lookup_bytes for r in gathers) / config.mem_width
            entry["embedding_cycles"] = sum(r.cycles for r in gathers)
            entry["embedding_of_memory_bound"] = limit / entry["embedding_cycles"]
        summary.append(entry)
    print(f"## Workloads on {backend} (array {config.rows}x{config.cols}, {config.mem_width} B/cycle)\n")
    print(markdown_table(summary, ["workload", "layers", "cycles", "macs", "bytes", "utilization",
                                   "embedding_cycles", "embedding_of_memory_bound"]))
    print("\n## Per layer\n")
    print(markdown_table(rows, ["workload", "op", "shape", "macs", "cycles", "utilization", "bytes", "intensity"]))
    plot = out_dir / "models_layers.png"
    out_dir.mkdir(parents=True, exist_ok=True)
    plot_layers(checked.records, config, plot)
    write_json(out_dir / "models.json", {"config": config.to_dict(), "backend": backend, "summary": summary,
                                        "layers": rows})
    return {"summary": summary, "layers": rows, "plots": [str(plot)]}
