"""``tridsa bench zoo``: the model zoo (:mod:`tridsa.sw.zoo`) per layer and per model.

For every offloaded layer: MACs, bytes the engines moved over the memory port, arithmetic intensity
(MACs per byte), cycles, MAC utilization (MACs / (peak x cycles)) and the fraction of the roofline
reached (MACs per cycle over ``min(peak, intensity x port bytes per cycle)``; for an embedding stage,
which has no MACs, the memory-bound limit: the bytes of the rows its lookups need over the port's peak,
divided by its cycles). On the golden backend the cycles and port bytes are the cycle model's
(:mod:`tridsa.sw.cycle_model`); on a gateware backend they are the RTL counters, and every layer is
checked bit for bit against the golden model. Writes ``zoo.json`` (after every model, with
``"complete": false`` until the last), ``zoo_roofline_<backend>.png`` and ``zoo.md`` (the summary table);
``--publish`` also puts the table into README.md and docs (section ``bench-zoo-<backend>``) and the
plot into docs/img.
"""
from __future__ import annotations

import time
from pathlib import Path

from tridsa.spec.config import Config
from tridsa.sw.driver import Accelerator
from tridsa.sw.zoo import MODELS, run_model

from .report import Progress, markdown_table, publish_image, write_json, write_section

__all__ = ["run", "GEMMINI_RESNET50_UTILIZATION", "TARGETS"]

#: Gemmini's published end-to-end ResNet-50 MAC utilization (Genc et al., DAC 2021), the reference point.
GEMMINI_RESNET50_UTILIZATION = 0.51
#: Issue targets on Config(): MAC utilization of ResNet-50 and BERT, memory-bound fraction of the embeddings.
TARGETS = {"resnet50": 0.90, "bert": 0.90, "dlrm embeddings": 0.90}



def _summary(name, rows, wall) -> dict:
    macs = sum(r["macs"] for r in rows)
    cycles = sum(r["cycles"] for r in rows)
    work = sum(r["peak_macs_per_cycle"] * r["cycles"] for r in rows if r["macs"])
    mem = sum(r["mem_bytes"] for r in rows)
    entry = {"layers": len(rows), "macs": macs, "cycles": cycles, "mem_bytes": mem,
             "host_bytes": sum(r["host_bytes"] for r in rows), "programs": sum(r["programs"] for r in rows),
             "instructions": sum(r["instructions"] for r in rows),
             "utilization": macs / work if work else None, "intensity": macs / mem if mem else None,
             "wall_seconds": wall}
    parts = sorted({r["name"].split("/")[0] for r in rows if "/" in r["name"] and r["name"][0] == "b"
                    and r["name"].split("/")[0][1:].isdigit()}, key=lambda p: int(p[1:]))
    for part in parts:                  # the LSTM's batch sizes, each on its own
        sub = [r for r in rows if r["name"].startswith(part + "/")]
        cycles = sum(r["cycles"] for r in sub)
        entry[f"batch {part[1:]}"] = {"cycles": cycles, "utilization": sum(r["macs"] for r in sub) / sum(
            r["peak_macs_per_cycle"] * r["cycles"] for r in sub)}
    gathers = [r for r in rows if r["op"] == "embedding_bags"]
    if gathers:
        entry["embedding_cycles"] = sum(r["cycles"] for r in gathers)
        entry["embedding_lookup_bytes"] = sum(r["lookup_bytes"] for r in gathers)
        entry["embedding_of_memory_bound"] = (entry["embedding_lookup_bytes"] / rows[0]["port_bytes"]
                                              / entry["embedding_cycles"])
    return entry


def run(config: Config, backend: str = "golden", out_dir="benchmarks/out", models=None, publish=False) -> dict:
    names = list(models or MODELS)
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        raise ValueError(f"unknown zoo model(s) {', '.join(unknown)}: expected names from {', '.join(MODELS)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    acc = Accelerator(backend, config)
    golden = None if backend == "golden" else Accelerator("golden", config)
    source = ("cycle model (tridsa/sw/cycle_model.py)" if backend == "golden"
              else f"RTL cycle counter on {backend}, every layer bit-exact with golden")
    layers, summary = [], {}
    with Progress(len(names), f"bench zoo ({backend})") as bar:
        for name in names:
            bar.step(name)
            start = time.perf_counter()
            records = run_model(name, acc, golden)
            rows = [dict(r.as_dict(config.mem_width), port_bytes=config.mem_width) for r in records]
            summary[name] = _summary(name, rows, time.perf_counter() - start)
            layers += rows
            write_json(out_dir / "zoo.json", {"config": config.to_dict(), "backend": backend, "cycles_from": source,
                                              "models": summary, "layers": layers, "complete": False})
    targets = _targets(summary)
    table = _table(summary, config, source, backend) + _targets_table(targets)
    print(table)
    print("\n## Per layer\n")
    print(markdown_table(layers, ["model", "name", "op", "shape", "macs", "cycles", "utilization", "intensity",
                                  "roofline_fraction", "programs"]))
    plot = _roofline(layers, config, out_dir / f"zoo_roofline_{backend}.png")
    (out_dir / "zoo.md").write_text(table + "\n")
    report = {"config": config.to_dict(), "backend": backend, "cycles_from": source, "models": summary,
              "targets": targets, "layers": layers, "files": [str(plot), str(out_dir / "zoo.md")], "complete": True}
    write_json(out_dir / "zoo.json", report)
    if publish:
        write_section(f"bench-zoo-{backend}", table)
        publish_image(plot)
    return report


def _targets(summary) -> dict:
    found = {}
    if "resnet50" in summary:
        found["resnet50"] = summary["resnet50"]["utilization"]
    if "bert" in summary:
        found["bert"] = summary["bert"]["utilization"]
    if "dlrm" in summary:
        found["dlrm embeddings"] = summary["dlrm"]["embedding_of_memory_bound"]
    return {k: {"value": v, "target": TARGETS[k], "met": v >= TARGETS[k]} for k, v in found.items()}


#: What each target measures, for the published table.
_TARGET_NAMES = {"resnet50": "ResNet-50 MAC utilization, end to end", "bert": "BERT-base layer MAC utilization",
                 "dlrm embeddings": "DLRM embedding stage, fraction of the memory-bound limit"}


def _targets_table(targets) -> str:
    if not targets:
        return ""
    rows = [{"target": _TARGET_NAMES[k], "measured": t["value"], "goal": f">= {t['target']:.2f}",
             "met": t["met"]} for k, t in targets.items()]
    return "\n\n" + markdown_table(rows, ["target", "measured", "goal", "met"])


def _table(summary, config, source, backend) -> str:
    rows = [dict(model=name, **entry) for name, entry in summary.items()]
    rows.append({"model": "Gemmini ResNet-50 (published, reference)", "utilization": GEMMINI_RESNET50_UTILIZATION})
    head = (f"`tridsa bench zoo --backend {backend}`: a {config.rows}x{config.cols} array, {config.mem_width} B/cycle "
            f"port, {config.mem_bytes // 1024} KiB accelerator memory; cycles: {source}.\n\n")
    return head + markdown_table(rows, ["model", "layers", "macs", "cycles", ("utilization", "MAC utilization"),
                                        ("intensity", "MACs/byte"), "programs", ("host_bytes", "host bytes"),
                                        ("embedding_of_memory_bound", "embeddings / memory bound")])


def _roofline(layers, config, path) -> Path:
    """PNG: every layer of every model on the roofline (MACs per cycle vs MACs per byte), coloured by model."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    fig, ax = plt.subplots(figsize=(8, 5.5))
    peak = config.rows * config.cols
    xs = np.logspace(-2, 3.5, 100)
    ax.loglog(xs, np.minimum(peak, xs * config.mem_width), "k:", label="roof (INT8 peak, port bandwidth)")
    models = list(dict.fromkeys(r["model"] for r in layers))
    for model, color in zip(models, plt.cm.tab10.colors):
        pts = [(r["intensity"], r["macs"] / r["cycles"]) for r in layers if r["model"] == model and r["macs"]]
        if pts:
            ax.scatter(*zip(*pts), color=color, label=model, s=14, alpha=0.8)
        # embedding stages have no MACs: their pooling additions (one per looked-up element) stand in
        adds = [(r["lookup_bytes"] / r["mem_bytes"], r["lookup_bytes"] / r["cycles"]) for r in layers
                if r["model"] == model and not r["macs"] and r["lookup_bytes"] and r["mem_bytes"]]
        if adds:
            ax.scatter(*zip(*adds), color=color, marker="x", s=40, label=f"{model} embeddings (int8 adds, not MACs)")
    ax.set_xlabel("arithmetic intensity (MACs per byte over the memory port)")
    ax.set_ylabel("MACs per cycle")
    ax.text(0.02, 0.02, "GEMMs re-read their A and B blocks for every output tile: ~4 MACs/byte on 8x8",
            transform=ax.transAxes, fontsize=7)
    ax.set_title(f"Model zoo on {config.rows}x{config.cols}: CV / NLP / RecSys layers")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)

