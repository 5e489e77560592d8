"""A small HAWQ-V3-style residual CNN for 8x8 digits, integer-only.

::

    x (1x8x8, pixels 0..16, scale 1/16)
    c1  conv3x3 1->16, BN folded, ReLU                 -> 16x8x8
    c2  conv3x3 16->32 stride 2, BN folded, ReLU       -> 32x4x4   (a)
    dw  depthwise conv3x3 32, BN folded, ReLU          -> 32x4x4
    pw  conv1x1 32->32, BN folded                      -> 32x4x4   (b)
    add ReLU(a + b), dyadic rescaling of both branches (integer NumPy)
    gap global average pool, dyadic rescale            -> 32       (integer NumPy)
    fc  linear 32->10                                  -> int32 logits

``precision="mixed"`` runs c2, dw and pw with int4 weights and int4 activations (two MACs per PE);
c1 and fc stay int8 (HAWQ-V3 keeps the first and last layers at 8 bits).
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..quantize import act_qparams, dyadic, rescale
from .base import (INT4_PERCENTILE, WEIGHTS_DIR, FloatModel, QuantModel, build_layer, calib_ranges, check_pixels,
               check_precision)

__all__ = ["CNN", "FloatCNN", "load_cnn", "load_cnn_float", "quantize_cnn"]

INPUT_SCALE = 1.0 / 16


def conv2d_float(x, w, b, stride=1, padding=0, groups=1):
    """Float NCHW convolution (reference only)."""
    x = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    bsz, c = x.shape[:2]
    o, cg, kh, kw = w.shape
    win = sliding_window_view(x, (kh, kw), axis=(2, 3))[:, :, ::stride, ::stride]
    ho, wo = win.shape[2:4]
    win = win.reshape(bsz, groups, c // groups, ho, wo, kh, kw)
    out = np.einsum("bgchwij,gocij->bgohw", win, w.reshape(groups, o // groups, cg, kh, kw))
    return out.reshape(bsz, o, ho, wo) + b[None, :, None, None]


class FloatCNN(FloatModel):
    """Float reference of the CNN (BN already folded). Parameters ``<layer>.w`` / ``<layer>.b``."""

    def forward(self, x, record=None):
        p = self.params
        rec = {} if record is None else record
        h = np.asarray(x, dtype=np.float64).reshape(-1, 1, 8, 8) * INPUT_SCALE
        rec["c1"] = a1 = np.maximum(conv2d_float(h, p["c1.w"], p["c1.b"], padding=1), 0)
        rec["c2"] = a2 = np.maximum(conv2d_float(a1, p["c2.w"], p["c2.b"], stride=2, padding=1), 0)
        rec["dw"] = a3 = np.maximum(conv2d_float(a2, p["dw.w"], p["dw.b"], padding=1, groups=a2.shape[1]), 0)
        rec["pw"] = a4 = conv2d_float(a3, p["pw.w"], p["pw.b"])
        rec["add"] = a5 = np.maximum(a2 + a4, 0)
        rec["gap"] = g = a5.mean(axis=(2, 3))
        rec["fc"] = out = g @ p["fc.w"] + p["fc.b"]
        return out


class CNN(QuantModel):
    """Integer CNN; ``forward(acc, x)`` takes (B, 8, 8) pixels and returns (B, 10) int32 logits."""

    def forward(self, acc, x):
        L = self.qlayers
        x = check_pixels(x).reshape(-1, 1, 8, 8)
        a1 = L["c1"](acc, x)
        a2 = L["c2"](acc, a1)
        a3 = L["dw"](acc, a2)
        a4 = L["pw"](acc, a3)
        # residual: both branches rescaled to the output scale, then ReLU (clamp at the zero point)
        za, zb, zy = L["c2"].out_zero_point, L["pw"].out_zero_point, self.c("add_zp")
        s = (rescale(a2.astype(np.int64) - za, self.c("add_m_a"), self.c("add_sh_a"), 0, "int32")
             + rescale(a4.astype(np.int64) - zb, self.c("add_m_b"), self.c("add_sh_b"), 0, "int32"))
        y = np.clip(s + zy, zy, 127)
        # global average pool: integer sum, one dyadic rescale (includes the 1/16)
        g = np.sum(y - zy, axis=(2, 3))
        gq = rescale(g, self.c("gap_m"), self.c("gap_sh"), L["fc"].in_zero_point, "int8")
        return L["fc"](acc, gq.astype(np.int8))


def quantize_cnn(fmodel: FloatCNN, calib_x, precision: str = "int8") -> CNN:
    """Post-training quantization of a :class:`FloatCNN`, calibrated on ``calib_x`` pixels."""
    check_precision(precision)
    rec = {}
    fmodel.forward(calib_x, rec)
    r = calib_ranges(rec)
    p = fmodel.params
    mid = "int4" if precision == "mixed" else "int8"
    r4 = calib_ranges({k: rec[k] for k in ("c1", "c2", "dw")}, INT4_PERCENTILE) if mid == "int4" else r
    s1, z1 = act_qparams(*r4["c1"], mid)
    s2, z2 = act_qparams(*r4["c2"], mid)
    s3, z3 = act_qparams(*r4["dw"], mid)
    s4, z4 = act_qparams(*r["pw"], "int8")
    sy, zy = act_qparams(*r["add"], "int8")
    sg, zg = act_qparams(*r["gap"], "int8")
    so = max(abs(v) for v in r["fc"]) / 2 ** 15
    layers = [
        build_layer("c1", p["c1.w"], p["c1.b"], INPUT_SCALE, 0, s1, z1, "int8", True, mid, padding=1),
        build_layer("c2", p["c2.w"], p["c2.b"], s1, z1, s2, z2, mid, True, mid, stride=2, padding=1),
        build_layer("dw", p["dw.w"], p["dw.b"], s2, z2, s3, z3, mid, True, mid, padding=1,
                    groups=p["dw.w"].shape[0]),
        build_layer("pw", p["pw.w"], p["pw.b"], s3, z3, s4, z4, mid, False, "int8"),
        build_layer("fc", p["fc.w"], p["fc.b"], sg, zg, so, 0, "int8", False, "int32"),
    ]
    (m_a, sh_a), (m_b, sh_b), (m_g, sh_g) = dyadic(s2 / sy), dyadic(s4 / sy), dyadic(sy / 16 / sg)
    consts = dict(add_zp=zy, add_m_a=m_a, add_sh_a=sh_a, add_m_b=m_b, add_sh_b=sh_b, gap_m=m_g, gap_sh=sh_g)
    meta = dict(model="cnn", precision=precision, logit_scale=so)
    return CNN({l.name: l for l in layers}, consts, meta)


def load_cnn(precision: str = "int8") -> CNN:
    """The trained integer CNN (``"int8"`` or ``"mixed"`` int4/int8)."""
    return CNN.load(WEIGHTS_DIR / f"cnn_{check_precision(precision)}.npz")


def load_cnn_float() -> FloatCNN:
    """The float reference CNN (BN folded)."""
    return FloatCNN.load(WEIGHTS_DIR / "cnn_float.npz")
