"""ONNX part of ``tridsa demo``: the repo's float CNN and Transformer exported with ``torch.onnx``, quantized
with ``onnxruntime.quantization.quantize_static`` (QOperator and QDQ formats), run through the ONNX backend
(:mod:`tridsa.sw.onnx_backend`) and compared with onnxruntime's own output on the same quantized model.

Needs torch (to export), onnxruntime (to quantize and compare) and scikit-learn (calibration digits), all
test extras; without them the demo says which is missing and skips this part. The .onnx files are
generated at demo time into the output folder.
"""
from __future__ import annotations

import dataclasses
import io
import logging
import math
import warnings
from pathlib import Path

import numpy as np

__all__ = ["missing_packages", "export_float", "quantize", "compare", "run"]

MODELS = ("cnn", "transformer")
FORMATS = ("QOperator", "QDQ")


#: Modules the demo needs -> their PyPI packages (all test extras).
NEEDS = {"torch": "torch", "onnxruntime": "onnxruntime", "sklearn": "scikit-learn"}


def missing_packages() -> list:
    """The PyPI packages this demo needs that are not installed."""
    import importlib.util
    return [package for module, package in NEEDS.items() if importlib.util.find_spec(module) is None]


# -- the repo's float models as torch modules ----------------------------------------------------------
def _torch_cnn(params):
    import torch
    from torch import nn
    t = {k: torch.tensor(v, dtype=torch.float32) for k, v in params.items()}

    class CNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1 = nn.Conv2d(1, 16, 3, padding=1)
            self.c2 = nn.Conv2d(16, 32, 3, stride=2, padding=1)
            self.dw = nn.Conv2d(32, 32, 3, padding=1, groups=32)
            self.pw = nn.Conv2d(32, 32, 1)
            self.fc = nn.Linear(32, 10)
            for name in ("c1", "c2", "dw", "pw"):
                getattr(self, name).weight.data, getattr(self, name).bias.data = t[f"{name}.w"], t[f"{name}.b"]
            self.fc.weight.data, self.fc.bias.data = t["fc.w"].T.contiguous(), t["fc.b"]

        def forward(self, x):                   # x: (B, 1, 8, 8) pixels / 16
            a = torch.relu(self.c2(torch.relu(self.c1(x))))
            b = self.pw(torch.relu(self.dw(a)))
            return self.fc(torch.relu(a + b).mean(dim=(2, 3)))

    return CNN().eval()


def _torch_transformer(params):
    import torch
    from torch import nn
    from .workloads import transformer as tr
    t = {k: torch.tensor(v, dtype=torch.float32) for k, v in params.items()}

    def linear(name):
        layer = nn.Linear(*params[f"{name}.w"].shape)
        layer.weight.data, layer.bias.data = t[f"{name}.w"].T.contiguous(), t[f"{name}.b"]
        return layer

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            for name in ("emb", "qkv", "out", "ffn1", "ffn2", "cls"):
                setattr(self, name, linear(name))
            for name in ("ln1", "ln2"):
                ln = nn.LayerNorm(tr.D, eps=tr.LN_EPS)
                ln.weight.data, ln.bias.data = t[f"{name}.g"], t[f"{name}.b"]
                setattr(self, name, ln)

        def forward(self, tokens):               # tokens: (B, 8, 16) floats
            h0 = self.emb(tokens)
            q, k, v = self.qkv(h0).split(tr.D, dim=-1)
            heads = []
            for h in range(tr.HEADS):
                sl = slice(h * tr.DH, (h + 1) * tr.DH)
                s = q[..., sl] @ k[..., sl].transpose(1, 2) / math.sqrt(tr.DH)
                heads.append(torch.softmax(s, dim=-1) @ v[..., sl])
            h1 = self.ln1(h0 + self.out(torch.cat(heads, dim=-1)))
            f = self.ffn1(h1)
            h2 = self.ln2(h1 + self.ffn2(f / 2 * (1 + torch.erf(f / math.sqrt(2)))))
            return self.cls(h2.mean(dim=1))

    return Encoder().eval()


def model_inputs(name: str, pixels: np.ndarray) -> np.ndarray:
    """The float input of the exported model for (B, 8, 8) digit pixels (what the float models see)."""
    if name == "cnn":
        return (pixels.reshape(-1, 1, 8, 8).astype(np.float32) / 16).astype(np.float32)
    from .workloads.transformer import INPUT_SCALE, tokens
    return (tokens(pixels).astype(np.float32) * np.float32(INPUT_SCALE)).astype(np.float32)


def export_float(name: str, path: Path) -> Path:
    """Export the repo's float model ``name`` (BN folded) with torch.onnx; checks it against the NumPy model."""
    import torch
    from . import workloads
    fmodel = getattr(workloads, f"load_{name}_float")()
    module = (_torch_cnn if name == "cnn" else _torch_transformer)(fmodel.params)
    x, _ = workloads.digits_test_set()
    sample = torch.tensor(model_inputs(name, x[:16]))
    with torch.no_grad():
        assert np.allclose(module(sample).numpy(), fmodel.forward(x[:16]), atol=1e-3), f"torch {name} != NumPy {name}"
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (sample,), buffer, dynamo=False, opset_version=17, input_names=["x"],
                          output_names=["logits"], dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue())
    return path


def calibration_pixels(n: int = 256) -> np.ndarray:
    """Training-split digits for calibration (the split of scripts/train_models.py; scikit-learn's digits)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    d = load_digits()
    x_train, _, _, _ = train_test_split(d.images.astype(np.int8), d.target, test_size=0.3, random_state=0,
                                        stratify=d.target)
    return x_train[:n]


def quantize(name: str, float_path: Path, fmt: str, out_path: Path) -> Path:
    """``quantize_static`` (uint8 activations, int8 weights per channel) in ``fmt`` (QOperator | QDQ)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            x = model_inputs(name, calibration_pixels())
            self.batches = iter([{"x": x[i:i + 32]} for i in range(0, len(x), 32)])

        def get_next(self):
            return next(self.batches, None)

    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    root.setLevel(logging.ERROR)      # quantize_static logs a pre-processing hint on the root logger (which
    try:                              # also installs a root handler: removed again below)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quantize_static(str(float_path), str(out_path), Reader(), quant_format=getattr(QuantFormat, fmt),
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True)
    finally:
        root.setLevel(level)
        root.handlers[:] = handlers
    return out_path


def output_step(model) -> float:
    """Quantization step of the model's output (the scale of the DequantizeLinear that produces it)."""
    from onnx import numpy_helper
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    out = model.graph.output[0].name
    node = next(n for n in model.graph.node if out in n.output)
    if node.op_type != "DequantizeLinear":
        return float("nan")
    return float(inits[node.input[1]])


@dataclasses.dataclass
class Comparison:
    """tridsa against onnxruntime as it runs by default (``equal``, ``max_steps``) and with its graph
    optimizations off (``equal_plain``, ``max_steps_plain``: it then evaluates the graph node by node)."""
    model: str
    format: str
    digits: int                 # of the test split (accuracies, comparisons: golden)
    backend_digits: int         # of them run on the chosen backend (``records``)
    outputs: int
    equal: int
    max_steps: float
    equal_plain: int
    max_steps_plain: float
    accuracy_float: float
    accuracy_ort: float
    accuracy_tridsa: float
    records: list


#: Backends fast enough for the whole test split; the others run its first SLOW_BACKEND_SAMPLES digits.
FULL_SPLIT_BACKENDS = ("golden", "verilator")
SLOW_BACKEND_SAMPLES = 8


def run_split(rep, inputs, chunk: int = 64):
    """``rep``'s first output over ``inputs`` in runs of ``chunk`` samples, and its per-step records summed
    over the runs."""
    from .onnx_graph import sum_records
    outputs, runs = [], []
    for i in range(0, len(inputs), chunk):
        outputs.append(rep.run([inputs[i:i + chunk]])[0])
        runs.append(rep.records)
    return np.concatenate(outputs), sum_records(runs)


def compare(name: str, fmt: str, backend_name: str, config, out_dir: Path, notice=None) -> Comparison:
    """Export, quantize, run the test split on golden and on ``backend_name`` (all of it on the fast backends,
    the first digits on the others; bit for bit equal), compare with onnxruntime; returns a
    :class:`Comparison` (its ``records``: per step on ``backend_name``, summed over the runs)."""
    import onnx
    import onnxruntime
    from .onnx_backend import backend
    from .workloads import digits_test_set
    x, labels = digits_test_set()
    float_path = export_float(name, out_dir / f"{name}_float.onnx")
    q_path = quantize(name, float_path, fmt, out_dir / f"{name}_{fmt.lower()}.onnx")
    model = onnx.load(q_path)
    inputs = model_inputs(name, x)
    ort_out = onnxruntime.InferenceSession(str(q_path), providers=["CPUExecutionProvider"]).run(None, {"x": inputs})[0]
    plain = onnxruntime.SessionOptions()
    plain.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    ort_plain = onnxruntime.InferenceSession(str(q_path), plain, providers=["CPUExecutionProvider"]).run(
        None, {"x": inputs})[0]
    float_out = onnxruntime.InferenceSession(str(float_path), providers=["CPUExecutionProvider"]).run(
        None, {"x": inputs})[0]
    kwargs = {} if notice is None else {"notice": notice}
    ours, records = run_split(backend("golden", config, **kwargs).prepare(model), inputs)
    count = len(inputs) if backend_name in FULL_SPLIT_BACKENDS else SLOW_BACKEND_SAMPLES
    if backend_name != "golden":
        got, records = run_split(backend(backend_name, config, **kwargs).prepare(model), inputs[:count])
        if not np.array_equal(got, ours[:count]):
            raise AssertionError(f"{name} {fmt}: {backend_name} differs from golden")
    step = output_step(model)
    accuracy = lambda y: float(np.mean(np.argmax(y, axis=-1) == labels))    # noqa: E731
    steps = lambda y: float(np.round(np.max(np.abs(ours.astype(np.float64) - y)) / step))    # noqa: E731
    return Comparison(name, fmt, len(inputs), count, ours.size, int(np.sum(ours == ort_out)), steps(ort_out),
                      int(np.sum(ours == ort_plain)), steps(ort_plain),
                      accuracy(float_out), accuracy(ort_out), accuracy(ours), records)


WHY = """  why outputs differ from onnxruntime:
  * its quantized kernels (QLinearConv, QLinearMatMul, QGemm) requantize in float32 (the int32 sum converted
    to float32, times a float32 scale); tridsa's offloaded ops are bit-exact with onnx's reference (float64
    product, round half to even): a value within float32 rounding of a half step lands one step apart;
  * by default onnxruntime's optimizer fuses the QDQ groups around host ops into its own integer kernels
    (QLinearSoftmax uses a lookup table, QLinearAdd, ...) where tridsa's host evaluates the graph as written
    (dequantize, float op, quantize): with its optimizations off onnxruntime evaluates that graph too, and
    only a few outputs differ, where a float32 MatMul of dequantized values (onnxruntime) and the exact
    integer product (tridsa) round to neighbouring steps;
  * a one-step difference early in the model can grow in later layers (the Transformer's GELU and LayerNorm)."""


def run(backend_name: str, config, out_dir: Path) -> dict:
    """Print the ONNX comparison for every model and format; returns a summary dict (empty when skipped)."""
    from .onnx_graph import format_report
    missing = missing_packages()
    print("\n== ONNX: torch.onnx export -> onnxruntime quantize_static -> tridsa ONNX backend")
    if missing:
        print(f"  skipped: needs {', '.join(missing)} (pip install {' '.join(missing)}; test extras of tridsa)")
        return {}
    summary = {}
    notices = []
    for name in MODELS:
        for fmt in FORMATS:
            c = compare(name, fmt, backend_name, config, out_dir / "onnx", notices.append)
            offloaded = [r for r in c.records if r.engine != "host"]
            print(f"  {name} {fmt}: float accuracy {c.accuracy_float * 100:.2f}% | "
                  f"onnxruntime {c.accuracy_ort * 100:.2f}%"
                  f" | tridsa {c.accuracy_tridsa * 100:.2f}% (test split, {c.digits} digits)")
            print(f"    logits equal to onnxruntime's: {c.equal}/{c.outputs} (largest difference {c.max_steps:.0f} "
                  f"quantization steps); with its graph optimizations off: {c.equal_plain}/{c.outputs} "
                  f"({c.max_steps_plain:.0f})")
            checked = "" if backend_name == "golden" else " (bit-exact with golden)"
            title = f"  per node, {c.backend_digits} digits on {backend_name}{checked}:"
            print(format_report(c.records, title, host_rows=False).replace("\n", "\n    "))
            summary[f"{name}_{fmt}"] = dict(equal=c.equal, outputs=c.outputs, max_steps=c.max_steps,
                                            equal_plain=c.equal_plain, max_steps_plain=c.max_steps_plain,
                                            accuracy_float=c.accuracy_float, accuracy_ort=c.accuracy_ort,
                                            accuracy_tridsa=c.accuracy_tridsa, offloaded=len(offloaded),
                                            cycles=sum(r.cycles or 0 for r in offloaded))
    print(WHY)
    for message in dict.fromkeys(notices):
        print(f"  notice: {message}")
    return summary
