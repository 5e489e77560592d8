"""An LSTM over the 8 rows of a digit (hidden 32), integer-only.

::

    x_t   pixel row t (8 values, scale 1/16), t = 0..7
    wx    linear 8->128 for all 8 steps in one GEMM (bias folded in)  -> int32 gates, Q10 (scale 2**-10)
    wh    linear 32->128 per step on h_{t-1}                          -> int32 gates, Q10
    cell  i, f, o = i_sigmoid(.), g = i_tanh(.) (Q15);  c = (f c + i g) >> 15 (Q15);
          h = o * i_tanh(c) (Q30) -> dyadic rescale to the hidden format
    cls   linear 32->10 on h_7 (int8)                                 -> int32 logits

Both gate GEMMs requantize straight to the fixed-point gate format (``out_dtype="int32"``), so their
sum needs no further scaling. The cell state stays in int64 Q15 in the driver. The hidden state is
int8 with scale 1/127 (``h`` lies in [-1, 1]); ``precision="mixed"`` keeps it as int4 (scale 1/7)
and runs the recurrent GEMM ``wh`` (the 4 of every 5 MACs of a step) in int4; the last state is
also rounded to int8 for the classifier.

Integer sigmoid/tanh: :func:`tridsa.sw.int_ops.i_sigmoid` / :func:`~tridsa.sw.int_ops.i_tanh`
(I-BERT's i-exp of ``-|x|`` and one integer division; max abs error about 1e-3 on Q10 input).
"""
from __future__ import annotations

import numpy as np

from ..int_ops import i_sigmoid, i_tanh
from ..quantize import dyadic, rescale, round_shift
from .base import (WEIGHTS_DIR, FloatModel, QuantModel, build_layer, calib_ranges, check_pixels,
               check_precision)

__all__ = ["FloatLSTM", "LSTM", "load_lstm", "load_lstm_float", "quantize_lstm"]

HIDDEN, T = 32, 8
INPUT_SCALE = 1.0 / 16
GATE_FRAC = 10      # gate pre-activations: Q10 int32
CELL_FRAC = 15      # sigmoid/tanh outputs and the cell state: Q15
H_SCALE = {"int8": 1.0 / 127, "int4": 1.0 / 7}


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


class FloatLSTM(FloatModel):
    """Float reference; ``wx`` (8, 4H), ``wh`` (H, 4H), ``b`` (4H,), gate order i, f, g, o."""

    def forward(self, x, record=None):
        p = self.params
        rec = {} if record is None else record
        xs = check_pixels(x).astype(np.float64) * INPUT_SCALE
        h = np.zeros((len(xs), HIDDEN))
        c = np.zeros_like(h)
        for t in range(T):
            z = xs[:, t] @ p["wx"] + h @ p["wh"] + p["b"]
            i, f, g, o = np.split(z, 4, axis=1)
            c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
            h = _sigmoid(o) * np.tanh(c)
        rec["cls"] = out = h @ p["cls.w"] + p["cls.b"]
        return out


def lstm_cell(z: np.ndarray, c: np.ndarray, gate_scale: float) -> tuple[np.ndarray, np.ndarray]:
    """One integer LSTM cell update (I-BERT style sigmoid/tanh): gate pre-activations ``z`` (B, 4H) in
    order i, f, g, o at ``gate_scale``, cell state ``c`` in Q15 -> ``(o * tanh(c'), c')``, the first in
    Q30 (``|.| <= 2**30``)."""
    zi, zf, zg, zo = np.split(z, 4, axis=1)
    i, _ = i_sigmoid(zi, gate_scale, CELL_FRAC)
    f, _ = i_sigmoid(zf, gate_scale, CELL_FRAC)
    g, _ = i_tanh(zg, gate_scale, CELL_FRAC)
    o, _ = i_sigmoid(zo, gate_scale, CELL_FRAC)
    c = round_shift(f * c + i * g, CELL_FRAC)
    tc, _ = i_tanh(c, 2.0 ** -CELL_FRAC, CELL_FRAC)
    return o * tc, c


class LSTM(QuantModel):
    """Integer LSTM; ``forward(acc, x)`` takes (B, 8, 8) pixels and returns (B, 10) int32 logits."""

    def forward(self, acc, x):
        L = self.qlayers
        xs = check_pixels(x)
        bsz = len(xs)
        hfmt = L["wh"].precision
        gx = L["wx"](acc, xs.reshape(bsz * T, 8)).reshape(bsz, T, 4 * HIDDEN).astype(np.int64)
        h = np.zeros((bsz, HIDDEN), dtype=np.int8)
        c = np.zeros((bsz, HIDDEN), dtype=np.int64)
        gs = 2.0 ** -GATE_FRAC
        for t in range(T):
            z = gx[:, t] + L["wh"](acc, h).astype(np.int64)
            hq30, c = lstm_cell(z, c, gs)                                # Q30, |hq30| <= 2**30
            h = rescale(hq30, self.c("h_m"), self.c("h_sh"), 0, hfmt).astype(np.int8)
        h8 = rescale(hq30, self.c("h8_m"), self.c("h8_sh"), 0, "int8").astype(np.int8)
        return L["cls"](acc, h8)


def quantize_lstm(fmodel: FloatLSTM, calib_x, precision: str = "int8") -> LSTM:
    """Post-training quantization of a :class:`FloatLSTM` (only the logit scale needs calibration)."""
    check_precision(precision)
    rec = {}
    fmodel.forward(calib_x, rec)
    r = calib_ranges(rec)
    p = fmodel.params
    hfmt = "int4" if precision == "mixed" else "int8"
    gate = 2.0 ** -GATE_FRAC
    s_cls = max(abs(v) for v in r["cls"]) / 2 ** 15
    layers = [
        build_layer("wx", p["wx"], p["b"], INPUT_SCALE, 0, gate, 0, "int8", out_dtype="int32"),
        build_layer("wh", p["wh"], None, H_SCALE[hfmt], 0, gate, 0, hfmt, out_dtype="int32"),
        build_layer("cls", p["cls.w"], p["cls.b"], H_SCALE["int8"], 0, s_cls, 0, "int8", out_dtype="int32"),
    ]
    consts = {}
    consts["h_m"], consts["h_sh"] = dyadic(2.0 ** -(2 * CELL_FRAC) / H_SCALE[hfmt])
    consts["h8_m"], consts["h8_sh"] = dyadic(2.0 ** -(2 * CELL_FRAC) / H_SCALE["int8"])
    meta = dict(model="lstm", precision=precision, logit_scale=s_cls)
    return LSTM({l.name: l for l in layers}, consts, meta)


def load_lstm(precision: str = "int8") -> LSTM:
    """The trained integer LSTM (``"int8"`` or ``"mixed"`` int4/int8)."""
    return LSTM.load(WEIGHTS_DIR / f"lstm_{check_precision(precision)}.npz")


def load_lstm_float() -> FloatLSTM:
    """The float reference LSTM."""
    return FloatLSTM.load(WEIGHTS_DIR / "lstm_float.npz")
