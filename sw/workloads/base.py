"""What the workloads share: the offloaded layer types :class:`QLinear` and :class:`QConv2d`, their offline
construction from float parameters, the parameter file format and the accuracy helpers."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from ..quantize import dyadic, pack_int4, quantize_bias, quantize_weights, unpack_int4
from ..requant import Requant


#: Folder of the parameter files.
WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
#: Rounding mode of every requantization in the workloads (single rounding, ties toward +inf).
ROUNDING = "half_up"
PRECISIONS = ("int8", "mixed")
_BITS = {"int8": 8, "int4": 4}


def check_precision(precision: str) -> str:
    """Validate a model precision name."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r} is invalid: must be one of {PRECISIONS}")
    return precision


@dataclasses.dataclass
class QLinear:
    """An offloaded ``y = requant(a @ weight + bias)`` (``acc.matmul``).

    ``weight`` is (K, N) int8 holding int8 or int4 values; ``bias`` (N,) int32 already contains the
    input zero-point correction ``-in_zero_point * weight.sum(0)``; ``multiplier``/``shift`` are per
    output channel. ``out_dtype="int32"`` with a requant gives a fine-scale int32 result.
    """

    name: str
    weight: np.ndarray
    bias: np.ndarray
    multiplier: np.ndarray
    shift: np.ndarray
    in_zero_point: int
    out_zero_point: int
    relu: bool
    precision: str
    out_dtype: str
    in_scale: float
    out_scale: list

    kind = "linear"

    def requant(self) -> Requant:
        return Requant(self.multiplier, self.shift, int(self.out_zero_point), ROUNDING)

    def __call__(self, acc, a: np.ndarray) -> np.ndarray:
        return acc.matmul(a, self.weight, bias=self.bias, requant=self.requant(), relu=self.relu,
                          precision=self.precision, out_dtype=self.out_dtype)

    def describe(self) -> dict:
        return {"name": self.name, "op": "matmul", "weight_shape": tuple(self.weight.shape),
                "precision": self.precision, "relu": self.relu, "out_dtype": self.out_dtype}


@dataclasses.dataclass
class QConv2d(QLinear):
    """An offloaded convolution (``acc.conv2d``, NCHW / OIHW).

    The input is padded in NumPy with its zero point (so padding is real zero), then convolved with
    ``padding=0``; depthwise when ``groups`` equals the channel count.
    """

    stride: int = 1
    padding: int = 0
    groups: int = 1

    kind = "conv2d"

    def __call__(self, acc, x: np.ndarray) -> np.ndarray:
        p = self.padding
        if p:
            x = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)), constant_values=self.in_zero_point)
        return acc.conv2d(x, self.weight, bias=self.bias, stride=self.stride, padding=0, groups=self.groups,
                          requant=self.requant(), relu=self.relu, precision=self.precision,
                          out_dtype=self.out_dtype)

    def describe(self) -> dict:
        d = super().describe()
        d.update(op="conv2d" if self.groups == 1 else "conv2d_depthwise", stride=self.stride,
                 padding=self.padding, groups=self.groups)
        return d


def build_layer(name: str, w, b, in_scale: float, in_zero_point: int, out_scale, out_zero_point: int,
                precision: str, relu: bool = False, out_dtype: str = "int8", *,
                stride: int = 1, padding: int = 0, groups: int = 1) -> QLinear:
    """Quantize one float layer (offline). ``w`` is (K, N) for a linear layer or OIHW for a conv.

    Weights are symmetric per output channel with ``precision`` bits; the bias is int32 at scale
    ``in_scale * w_scale``; the requant multiplier/shift come from :func:`tridsa.sw.quantize.dyadic`.
    ``out_scale`` may be per output channel.
    """
    w = np.asarray(w, dtype=np.float64)
    conv = w.ndim == 4
    axis = 0 if conv else 1
    q, w_scale = quantize_weights(w, _BITS[precision], axis=axis)
    colsum = q.reshape(q.shape[0], -1).sum(1) if conv else q.sum(0)
    bias = quantize_bias(np.zeros(w_scale.shape) if b is None else b, in_scale * w_scale).astype(np.int64)
    bias = bias - int(in_zero_point) * colsum.astype(np.int64)
    out_scale = np.broadcast_to(np.asarray(out_scale, dtype=np.float64), w_scale.shape)
    mult, shift = dyadic(in_scale * w_scale / out_scale)
    common = dict(name=name, weight=q, bias=bias.astype(np.int32), multiplier=mult, shift=shift,
                  in_zero_point=int(in_zero_point), out_zero_point=int(out_zero_point), relu=bool(relu),
                  precision=precision, out_dtype=out_dtype, in_scale=float(in_scale),
                  out_scale=[float(v) for v in out_scale])
    if conv:
        return QConv2d(**common, stride=stride, padding=padding, groups=groups)
    return QLinear(**common)


# -- file format -----------------------------------------------------------------------------------
_ARRAYS = ("bias", "multiplier", "shift")


def save_model(path, layers: list, consts: dict, meta: dict) -> None:
    """Write layers (int4 weights packed two per byte), integer/float constants and metadata to ``.npz``."""
    arrays, specs = {}, []
    for layer in layers:
        spec = {f.name: getattr(layer, f.name) for f in dataclasses.fields(layer)
                if f.name not in _ARRAYS + ("weight",)}
        spec["kind"] = layer.kind
        spec["weight_shape"] = list(layer.weight.shape)
        w = layer.weight
        arrays[f"{layer.name}/weight"] = pack_int4(w) if layer.precision == "int4" else w.astype(np.int8)
        for key in _ARRAYS:
            arrays[f"{layer.name}/{key}"] = np.asarray(getattr(layer, key))
        specs.append(spec)
    for key, value in consts.items():
        arrays[f"const/{key}"] = np.asarray(value)
    header = json.dumps({"layers": specs, "meta": meta})
    np.savez_compressed(path, header=np.array(header), **arrays)


def load_model_file(path) -> tuple[dict, dict, dict]:
    """Read a file written by :func:`save_model`: ``(layers by name, consts, meta)``."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run scripts/train_models.py to create it")
    with np.load(path, allow_pickle=False) as data:
        header = json.loads(str(data["header"]))
        layers = {}
        for spec in header["layers"]:
            spec = dict(spec)
            kind, shape = spec.pop("kind"), tuple(spec.pop("weight_shape"))
            name = spec["name"]
            raw = data[f"{name}/weight"]
            w = unpack_int4(raw, int(np.prod(shape))).reshape(shape) if spec["precision"] == "int4" \
                else raw.astype(np.int8)
            fields = {key: data[f"{name}/{key}"] for key in _ARRAYS}
            cls = QConv2d if kind == "conv2d" else QLinear
            layers[name] = cls(weight=w, **fields, **spec)
        consts = {key[len("const/"):]: data[key] for key in data.files if key.startswith("const/")}
    return layers, consts, header["meta"]


def save_float(path, params: dict, meta: dict | None = None) -> None:
    """Float parameters (float32) and metadata to ``.npz``."""
    np.savez_compressed(path, header=np.array(json.dumps(meta or {})),
                        **{k: np.asarray(v, dtype=np.float32) for k, v in params.items()})


def load_float(path) -> tuple[dict, dict]:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run scripts/train_models.py to create it")
    with np.load(path, allow_pickle=False) as data:
        params = {k: data[k].astype(np.float64) for k in data.files if k != "header"}
        meta = json.loads(str(data["header"]))
    return params, meta


class QuantModel:
    """Base of the integer models: named offloaded layers, integer constants, metadata."""

    def __init__(self, qlayers: dict, consts: dict, meta: dict):
        self.qlayers = dict(qlayers)
        self.consts = {k: np.asarray(v) for k, v in consts.items()}
        self.meta = dict(meta)
        self.precision = check_precision(self.meta.get("precision", "int8"))

    def forward(self, acc, x):  # pragma: no cover - every model overrides it
        raise NotImplementedError

    def layers(self) -> list:
        """One description dict per offloaded layer, in execution order."""
        return [layer.describe() for layer in self.qlayers.values()]

    def c(self, key: str) -> int:
        """An integer scalar constant."""
        return int(self.consts[key])

    def save(self, path) -> None:
        save_model(path, list(self.qlayers.values()), self.consts, self.meta)

    @classmethod
    def load(cls, path):
        return cls(*load_model_file(path))


class FloatModel:
    """Base of the float references: a dict of float parameters and ``forward(x, record=None)``."""

    def __init__(self, params: dict, meta: dict | None = None):
        self.params = {k: np.asarray(v, dtype=np.float64) for k, v in params.items()}
        self.meta = dict(meta or {})

    def forward(self, x, record: dict | None = None):  # pragma: no cover - every model overrides it
        raise NotImplementedError

    def save(self, path) -> None:
        save_float(path, self.params, self.meta)

    @classmethod
    def load(cls, path):
        return cls(*load_float(path))


def check_pixels(x) -> np.ndarray:
    """Validate digits images: (B, 8, 8) or (B, 64) integers in 0..16; returns (B, 8, 8) int8."""
    a = np.asarray(x)
    if not np.issubdtype(a.dtype, np.integer):
        raise TypeError(f"x must be an integer array of pixels (got dtype {a.dtype})")
    if a.ndim != 2 and a.ndim != 3 or a.shape[-1] * (a.shape[-2] if a.ndim == 3 else 1) != 64:
        raise ValueError(f"x must have shape (B, 8, 8) or (B, 64) (got {a.shape})")
    if a.size and (a.min() < 0 or a.max() > 16):
        raise ValueError("x must hold pixel values in 0..16")
    return a.reshape(-1, 8, 8).astype(np.int8)


def calib_ranges(record: dict, percentile: float = 100.0) -> dict:
    """``{name: (lo, hi)}`` of recorded float activations: min/max, or the ``100 - percentile`` and
    ``percentile`` percentiles (clipping outliers helps 4-bit activations)."""
    if percentile >= 100.0:
        return {k: (float(np.min(v)), float(np.max(v))) for k, v in record.items()}
    return {k: (float(np.percentile(v, 100.0 - percentile)), float(np.percentile(v, percentile)))
            for k, v in record.items()}


#: Calibration percentile of 4-bit activations (8-bit ones use min/max).
INT4_PERCENTILE = 99.9


def digits_test_set() -> tuple[np.ndarray, np.ndarray]:
    """The held-out split of scikit-learn's digits set used by every image model.

    Returns ``(x, y)``: (N, 8, 8) int8 pixels in 0..16 and (N,) int64 labels.
    """
    with np.load(WEIGHTS_DIR / "digits_test.npz", allow_pickle=False) as data:
        return data["x"].astype(np.int8), data["y"].astype(np.int64)


def accuracy(predict, x: np.ndarray, y: np.ndarray, batch: int = 256) -> float:
    """Top-1 accuracy of ``predict(x_batch) -> logits`` (batched)."""
    hits = 0
    for i in range(0, len(x), batch):
        hits += int(np.sum(np.argmax(predict(x[i:i + batch]), axis=-1) == y[i:i + batch]))
    return hits / len(x)
