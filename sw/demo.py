"""``tridsa demo``: real quantized layers of every workload offloaded to the simulated accelerator.

For each workload (CNN, Transformer, LSTM, DLRM) the demo reports float / INT8 / INT4-INT8 accuracy
(golden model, whole test split), then runs the mixed-precision model on a batch through a gateware
backend, checking every offloaded layer against the golden model bit for bit, and prints cycles and
MAC utilization per layer. It writes ``demo_layers.png`` (per-layer utilization and a roofline) and
``demo_layers.json`` into the output folder. The ``onnx`` part (:mod:`tridsa.sw.onnx_demo`) runs the CNN and
the Transformer as quantized ONNX models and compares them with onnxruntime.
"""
from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

from ..sim.backend import SIMULATION_BACKENDS
from ..spec.config import Config
from .profile import CheckedAccelerator
from .progress import Progress

__all__ = ["main", "PRECISIONS", "WORKLOADS"]


@dataclasses.dataclass
class Workload:
    title: str
    model: str            # name of the loader in tridsa.sw.workloads: load_<model>
    batch: int            # samples run on the gateware backend

    def load(self, precision=None):
        from . import workloads
        if precision is None:
            return getattr(workloads, f"load_{self.model}_float")()
        return getattr(workloads, f"load_{self.model}")(precision)

    def data(self):
        """(inputs tuple, labels) of the test split."""
        from . import workloads
        if self.model == "dlrm":
            dense, sparse, clicks = workloads.dlrm.synthetic_ctr(1000, seed=7)
            return (dense, sparse), clicks
        x, y = workloads.digits_test_set()
        return (x,), y

    def head(self, inputs, n):
        if self.model == "dlrm":
            dense, sparse = inputs
            ends = [off[n] if n < len(off) else len(idx) for idx, off in sparse]
            return (dense[:n], [(idx[:e], off[:n]) for (idx, off), e in zip(sparse, ends)])
        return (inputs[0][:n],)

    def forward_all(self, model, acc, inputs, chunk=64):
        """Forward pass over the whole split in chunks that fit the accelerator memory."""
        if self.model == "dlrm":
            return model.forward(acc, *inputs)
        return np.concatenate([model.forward(acc, inputs[0][i:i + chunk]) for i in range(0, len(inputs[0]), chunk)])

    def accuracy(self, golden, inputs, labels) -> dict:
        """``{"float": ..., "INT8": ..., "INT4/INT8": ...}`` scores of the whole split on the golden model."""
        scores = {"float": self.score(self.load().forward(*inputs), labels)}
        for precision, label in PRECISIONS.items():
            scores[label] = self.score(self.forward_all(self.load(precision), golden, inputs), labels)
        return scores

    @property
    def metric(self) -> str:
        return "AUC" if self.model == "dlrm" else "accuracy"

    def score(self, outputs, labels) -> str:
        """The :attr:`metric` of ``outputs``, formatted."""
        if self.model == "dlrm":
            from .workloads.dlrm import auc
            return f"{auc(np.asarray(outputs, np.float64), labels):.4f}"
        return f"{np.mean(np.argmax(outputs, axis=-1) == labels) * 100:.2f}%"


#: The quantized models' precisions and their names in tables.
PRECISIONS = {"int8": "INT8", "mixed": "INT4/INT8"}

WORKLOADS = {
    "cnn": Workload("CNN (digits, HAWQ-V3 style)", "cnn", 8),
    "transformer": Workload("Transformer encoder (I-BERT integer-only)", "transformer", 2),
    "lstm": Workload("LSTM (digit rows as a sequence)", "lstm", 4),
    "dlrm": Workload("DLRM (synthetic Zipf click-through data)", "dlrm", 32),
}


class _Counter:
    """Counts the offloaded calls of a forward pass (golden), to size the progress bar."""

    def __init__(self, golden):
        self.golden, self.calls = golden, 0

    def __getattr__(self, op):
        def call(*args, **kwargs):
            self.calls += 1
            return getattr(self.golden, op)(*args, **kwargs)
        return call


def _forward(model, acc, inputs):
    return model.forward(acc, *inputs)


def utilization(records) -> float:
    """MACs / sum(layer peak x layer cycles): each layer's peak is INT8's or INT4's (2x)."""
    capacity = sum(r.macs / r.utilization for r in records if r.utilization)
    return sum(r.macs for r in records if r.utilization) / capacity if capacity else 0.0


def profile(checked: CheckedAccelerator, name: str, golden, inputs=None, batch=None, precision="mixed") -> list:
    """Run workload ``name``'s model (``precision``: a key of :data:`PRECISIONS`) on the first ``batch``
    samples (default: the workload's demo batch) through ``checked`` (every layer compared with golden)
    with a progress bar; return the layers' records."""
    wl = WORKLOADS[name]
    if inputs is None:
        inputs, _ = wl.data()
    model = wl.load(precision)
    batch = wl.head(inputs, batch or wl.batch)
    counter = _Counter(golden)
    expected = _forward(model, counter, batch)
    checked.workload = name
    first = len(checked.records)
    with Progress(counter.calls, f"  {name}") as progress:
        checked.on_layer = lambda r: progress.finished(
            f"{r.op} {r.shape}" + (f"  util {r.utilization:.2f}" if r.utilization else ""))
        got = _forward(model, checked, batch)
    if not np.array_equal(got, expected):
        raise AssertionError(f"{name}: model output differs from golden")
    return checked.records[first:]


def run_randla(checked: CheckedAccelerator, golden, out_dir: Path) -> dict:
    """Hutchinson trace estimate with sketches on the gateware; error-vs-samples curves (golden) as PNG."""
    from . import randla
    print("\n== Randomized linear algebra on the sketch engine (Philox4x32-10 + on-the-fly sketch multiply)")
    a = randla.demo_matrix(32, seed=1)
    checked.workload = "randla"
    checked.on_layer = None
    first = len(checked.records)
    estimate = randla.hutchinson(checked, a, samples=16, key=(2021, 6))
    true = int(np.trace(a.astype(np.int64)))
    records = checked.records[first:]
    print(f"  Hutchinson: trace {true}, estimate {estimate.trace:.1f} from 16 Rademacher probes "
          f"(rel. error {abs(estimate.trace - true) / abs(true):.3f}); {len(records)} sketch call(s) bit-exact, "
          f"{sum(r.cycles for r in records)} cycles, 0 bytes of Omega moved")
    hc = randla.hutchinson_curve(golden, a, [4, 8, 16, 32, 64, 128], trials=8)
    rf = randla.range_finder_curve(golden, randla.demo_matrix(32, seed=2, symmetric=False), [2, 4, 8, 16])
    randla.plot_errors({"Hutchinson trace (vs samples)": (hc["samples"], hc["trace_error"]),
                        "Hutchinson diagonal (vs samples)": (hc["samples"], hc["diag_error"]),
                        "range finder (vs rank k)": (rf["samples"], rf["error"]),
                        "optimal rank-k (SVD)": (rf["samples"], rf["optimal"])},
                       out_dir / "demo_randla.png", "randomized linear algebra: relative error")
    print(f"  wrote {out_dir / 'demo_randla.png'} (error vs samples; range finder vs optimal rank-k error)")
    return {"trace": true, "estimate": estimate.trace, "cycles": sum(r.cycles for r in records)}


def run(backend: str, config: Config, out_dir: Path, names, full_accuracy: bool = True) -> dict:
    from .driver import Accelerator
    out_dir.mkdir(parents=True, exist_ok=True)
    golden = Accelerator("golden", config)
    checked = CheckedAccelerator(backend, config)
    summary = {}
    print(f"tridsa demo: backend={backend}, array {config.rows}x{config.cols}, memory {config.mem_width} B/cycle, "
          f"latency {config.mem_latency}")
    for name in [n for n in names if n in WORKLOADS]:
        wl = WORKLOADS[name]
        print(f"\n== {wl.title}")
        inputs, labels = wl.data()
        if full_accuracy:
            scores = wl.accuracy(golden, inputs, labels)
            print(f"  {wl.metric} (golden, test split): " + " | ".join(f"{k} {v}" for k, v in scores.items()))
        start = time.perf_counter()
        records = profile(checked, name, golden, inputs)
        cycles = sum(r.cycles for r in records)
        macs = sum(r.macs for r in records)
        util = utilization(records)
        print(f"  {len(records)} offloaded layers on {backend}, all bit-exact with golden; batch {wl.batch}: "
              f"{cycles} cycles, {macs} MACs, MAC utilization {util * 100:.1f}%, "
              f"{time.perf_counter() - start:.1f} s")
        print(f"  {'layer':<14}{'shape':<34}{'cycles':>9}{'util':>8}{'bytes':>9}")
        for r in records[:12]:
            layer_util = f"{r.utilization * 100:.1f}%" if r.utilization is not None else "-"
            print(f"  {r.op:<14}{r.shape:<34}{r.cycles:>9}{layer_util:>8}{r.bytes_moved:>9}")
        if len(records) > 12:
            print(f"  ... {len(records) - 12} more layers")
        summary[name] = {"layers": len(records), "cycles": cycles, "macs": macs, "utilization": util}
    if "randla" in names:
        summary["randla"] = run_randla(checked, golden, out_dir)
    if "onnx" in names:
        from . import onnx_demo
        summary["onnx"] = onnx_demo.run(backend, config, out_dir)
    (out_dir / "demo_layers.json").write_text(json.dumps(
        {"config": config.to_dict(), "backend": backend, "summary": summary,
         "layers": [dataclasses.asdict(r) for r in checked.records]}, indent=1))
    plot_layers(checked.records, config, out_dir / "demo_layers.png")
    print(f"\nwrote {out_dir / 'demo_layers.png'} and {out_dir / 'demo_layers.json'}")
    return summary


#: Legends beside the axes, so they never cover bars or points.
_LEGEND_OUTSIDE = dict(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)


def plot_layers(records, config, path):
    """PNG: per-layer utilization bars and a roofline (MACs/cycle vs MACs per byte moved)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(15, 4.5))
    names = list(dict.fromkeys(r.workload for r in records))
    colors = dict(zip(names, plt.cm.tab10.colors))
    util = [(r.utilization or 0) * 100 for r in records]
    ax1.bar(range(len(records)), util, color=[colors[r.workload] for r in records])
    ax1.set_xlabel("offloaded layer, in execution order (embedding bags have no MACs)")
    ax1.set_ylabel("MAC utilization of the layer's peak (%)")
    ax1.set_title("Per-layer utilization")
    from matplotlib.patches import Patch
    ax1.legend(handles=[Patch(color=colors[n], label=n) for n in names], **_LEGEND_OUTSIDE)
    peak = config.rows * config.cols
    xs = np.logspace(-2, 3, 100)
    ax2.loglog(xs, np.minimum(2 * peak, xs * config.mem_width), "k--", label="roof (INT4 peak, port bandwidth)")
    ax2.loglog(xs, np.minimum(peak, xs * config.mem_width), "k:", label="roof (INT8 peak)")
    for n in names:
        pts = [(r.intensity, r.macs / r.cycles) for r in records if r.workload == n and r.cycles and r.macs]
        if pts:
            ax2.scatter(*zip(*pts), color=colors[n], label=n, s=18)
    ax2.set_xlabel("arithmetic intensity (MACs per byte moved)")
    ax2.set_ylabel("MACs per cycle")
    ax2.set_title("Roofline")
    ax2.legend(fontsize=8, **_LEGEND_OUTSIDE)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    from .cli import Parser
    parser = Parser(prog="tridsa demo", description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="verilator", choices=SIMULATION_BACKENDS)
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS) + ["randla", "onnx"],
                        choices=list(WORKLOADS) + ["randla", "onnx"],
                        help="onnx: the CNN and Transformer exported with torch.onnx, quantized with onnxruntime "
                        "(QOperator and QDQ), run through the ONNX backend and compared with onnxruntime")
    parser.add_argument("--out", type=Path, default=Path("out"))
    parser.add_argument("--no-accuracy", action="store_true", help="skip the whole-test-split accuracy runs")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    run(args.backend, Config(), args.out, args.workloads, not args.no_accuracy)
    return 0


if __name__ == "__main__":
    sys.exit(main())
