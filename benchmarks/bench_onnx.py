"""Quantized ONNX models through the ONNX backend (``tridsa bench onnx``).

The repo's float CNN and Transformer, exported with torch.onnx and quantized with onnxruntime's
``quantize_static`` in the QOperator and QDQ formats (:mod:`tridsa.sw.onnx_demo`), run on the digits test
split on golden and on the chosen backend (bit for bit equal); the table gives the accuracies (float
model and onnxruntime on the same split), how many logits equal onnxruntime's (with its graph
optimizations on and off) and the offloaded steps' RTL cycles and MAC utilization. Writes ``onnx.json``
and the table into the ``bench-onnx`` section of docs/onnx.md.
"""
from __future__ import annotations

from pathlib import Path

from benchmarks.report import markdown_table, write_json, write_section
from tridsa.sw import onnx_demo


def run(config, backend: str, out_dir: str, quick: bool = False) -> dict:
    """Every model and format; ``quick``: the CNN only."""
    missing = onnx_demo.missing_packages()
    if missing:
        raise RuntimeError(f"tridsa bench onnx needs {', '.join(missing)} (pip install {' '.join(missing)})")
    import onnxruntime
    import torch
    rows = []
    models = ("cnn",) if quick else onnx_demo.MODELS
    for name in models:
        for fmt in onnx_demo.FORMATS:
            c = onnx_demo.compare(name, fmt, backend, config, Path(out_dir) / "onnx", notice=lambda message: None)
            offloaded = [r for r in c.records if r.engine != "host"]
            cycles = [r.cycles for r in offloaded]
            macs = sum(r.macs for r in offloaded)
            capacity = sum(r.macs / r.utilization for r in offloaded if r.utilization)
            rows.append({"model": name, "format": fmt, "float": f"{c.accuracy_float * 100:.2f}%",
                         "ort": f"{c.accuracy_ort * 100:.2f}%", "tridsa": f"{c.accuracy_tridsa * 100:.2f}%",
                         "equal": f"{c.equal} ({c.max_steps:.0f})", "equal_plain": f"{c.equal_plain} ({c.max_steps_plain:.0f})",
                         "steps": f"{len(offloaded)} of {len(c.records)}",
                         "cycles": None if None in cycles else sum(cycles),
                         "utilization": f"{macs / capacity * 100:.1f}%" if capacity else None,
                         "digits": c.backend_digits, "outputs": c.outputs, "split": c.digits})
    table = markdown_table(rows, [
        ("model", "model"), ("format", "format"), ("float", "float acc."), ("ort", "onnxruntime acc."),
        ("tridsa", "tridsa acc."), ("equal", f"logits equal to onnxruntime's of {rows[0]['outputs']} (max steps apart)"),
        ("equal_plain", "same, its optimizations off"), ("steps", "steps on the accelerator"),
        ("digits", f"digits on {backend}"), ("cycles", "cycles"), ("utilization", "MAC utilization")])
    counter = "the golden backend's cycle model" if backend == "golden" else f"RTL cycle counter on {backend}"
    source = (f"accuracies on the {rows[0]['split']}-digit test split; cycles: {counter}, summed over the "
              f"offloaded steps; Config {config.rows}x{config.cols}; onnxruntime "
              f"{onnxruntime.__version__}, torch {torch.__version__}; written by "
              f"`tridsa bench onnx --backend {backend}{' --quick' if quick else ''}`")
    text = table + f"\n\n({source})"
    print(text)
    write_json(f"{out_dir}/onnx.json", {"config": config.to_dict(), "backend": backend, "rows": rows, "source": source})
    if not quick:
        write_section("bench-onnx", text)
    return {"rows": rows}

