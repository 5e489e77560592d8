"""A one-layer Transformer encoder over the 8 rows of a digit, integer-only in the I-BERT style.

::

    tokens: 8 rows x (8 pixels + one-hot position), pixels scale 1/16      (B, 8, 16)
    emb   linear 16->32 (the one-hot columns are the learned position embedding)
    qkv   linear 32->96 (one GEMM, per-channel requant to the q, k and v scales)
    attn  2 heads of 16: scores = q k^T (int32) -> i-softmax (uint8, scale 2**-8) -> p v
    out   linear 32->32;  residual add (dyadic) -> i-LayerNorm (i-sqrt) -> h1
    ffn1  linear 32->64 -> int32 -> i-GELU -> ffn2 linear 64->32;  residual -> i-LayerNorm -> h2
    pool  mean over the 8 tokens (integer sum + dyadic rescale);  cls linear 32->10 -> int32 logits

Post-LN as in BERT. ``precision="mixed"`` runs the two FFN GEMMs (the bulk of the MACs) with int4
weights and int4 activations; everything else is int8. Every GEMM goes to ``acc.matmul``, except the
attention products: all samples' and heads' ``q k^T`` are one ``acc.matmul_batch``, their ``p v`` another.
"""
from __future__ import annotations

import math

import numpy as np

from ..int_ops import i_gelu, i_layernorm, i_softmax
from ..quantize import DTYPE_RANGES, act_qparams, dyadic, rescale
from ..requant import Requant
from .base import (INT4_PERCENTILE, ROUNDING, WEIGHTS_DIR, FloatModel, QuantModel, build_layer, calib_ranges, check_pixels,
               check_precision)

__all__ = ["FloatTransformer", "Transformer", "load_transformer", "load_transformer_float",
           "quantize_transformer", "tokens"]

D, HEADS, FFN, T = 32, 2, 64, 8
DH = D // HEADS
INPUT_SCALE = 1.0 / 16
LN_EPS = 1e-5
GELU_BITS = 10      # the i-GELU input is requantized to about +-2**GELU_BITS
RES_BITS = 14       # residual sums are held at about +-2**RES_BITS before i-LayerNorm
_erf = np.frompyfunc(math.erf, 1, 1)


def tokens(x) -> np.ndarray:
    """Integer tokens (B, 8, 16): pixel row (scale 1/16) and a one-hot position of value 16 (= 1.0)."""
    x = check_pixels(x).astype(np.int8)
    pos = np.broadcast_to(np.eye(T, dtype=np.int8) * 16, (len(x), T, T))
    return np.concatenate([x, pos], axis=2)


def _layernorm(x, g, b):
    mu = x.mean(-1, keepdims=True)
    var = x.var(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + LN_EPS) * g + b


class FloatTransformer(FloatModel):
    """Float reference. Linear weights are stored (in, out)."""

    def forward(self, x, record=None):
        p = self.params
        rec = {} if record is None else record
        t = tokens(x).astype(np.float64) * INPUT_SCALE
        rec["emb"] = h0 = t @ p["emb.w"] + p["emb.b"]
        qkv = h0 @ p["qkv.w"] + p["qkv.b"]
        rec["q"], rec["k"], rec["v"] = q, k, v = np.split(qkv, 3, axis=-1)
        ctx = []
        for h in range(HEADS):
            sl = slice(h * DH, (h + 1) * DH)
            s = q[..., sl] @ np.swapaxes(k[..., sl], 1, 2) / math.sqrt(DH)
            e = np.exp(s - s.max(-1, keepdims=True))
            ctx.append((e / e.sum(-1, keepdims=True)) @ v[..., sl])
        rec["ctx"] = c = np.concatenate(ctx, axis=-1)
        rec["attn"] = a = c @ p["out.w"] + p["out.b"]
        rec["res1"] = r1 = h0 + a
        rec["ln1"] = h1 = _layernorm(r1, p["ln1.g"], p["ln1.b"])
        rec["ffn1"] = f = h1 @ p["ffn1.w"] + p["ffn1.b"]
        rec["gelu"] = g = f / 2 * (1 + _erf(f / math.sqrt(2)).astype(np.float64))
        rec["ffn2"] = f2 = g @ p["ffn2.w"] + p["ffn2.b"]
        rec["res2"] = r2 = h1 + f2
        rec["ln2"] = h2 = _layernorm(r2, p["ln2.g"], p["ln2.b"])
        rec["pool"] = pooled = h2.mean(1)
        rec["cls"] = out = pooled @ p["cls.w"] + p["cls.b"]
        return out


class Transformer(QuantModel):
    """Integer Transformer; ``forward(acc, x)`` takes (B, 8, 8) pixels and returns (B, 10) int32 logits."""

    def _ln(self, acc_r, tag, dtype):
        """i-LayerNorm of int32 residual sums and the per-channel affine, saturated to ``dtype``."""
        y, _ = i_layernorm(acc_r)
        v = rescale(y * self.consts[f"{tag}_sign"], self.consts[f"{tag}_m"], self.consts[f"{tag}_sh"], 0, "int32")
        lo, hi = DTYPE_RANGES[dtype]
        return np.clip(v + self.consts[f"{tag}_beta"] + self.c(f"{tag}_zp"), lo, hi).astype(np.int8)

    def _residual(self, a, b, tag):
        return (rescale(a.astype(np.int64), self.c(f"{tag}_m_a"), self.c(f"{tag}_sh_a"), 0, "int32")
                + rescale(b.astype(np.int64), self.c(f"{tag}_m_b"), self.c(f"{tag}_sh_b"), 0, "int32"))

    def forward(self, acc, x):
        L = self.qlayers
        bsz = len(check_pixels(x))
        mid = "int4" if self.precision == "mixed" else "int8"
        h0 = L["emb"](acc, tokens(x).reshape(bsz * T, -1))                   # int8, symmetric
        qkv = L["qkv"](acc, h0).reshape(bsz, T, 3, HEADS, DH)
        # (sample, head) pairs are the problems of one batched GEMM: (bsz * HEADS, T, DH) each
        q, k, v = (np.ascontiguousarray(qkv[:, :, j].transpose(0, 2, 1, 3)).reshape(bsz * HEADS, T, DH)
                   for j in range(3))
        scores = acc.matmul_batch(q, np.ascontiguousarray(k.transpose(0, 2, 1)))     # int32 q k^T
        p, _ = i_softmax(scores, float(self.consts["att_scale"]), out_bits=8)       # uint8, scale 2**-8
        rq_ctx = Requant(self.c("ctx_m"), self.c("ctx_sh"), 0, ROUNDING)
        ctx = acc.matmul_batch(p.astype(np.uint8), v, requant=rq_ctx, out_dtype="int8")
        ctx = ctx.reshape(bsz, HEADS, T, DH).transpose(0, 2, 1, 3)                  # heads side by side
        a = L["out"](acc, np.ascontiguousarray(ctx).reshape(bsz * T, D))
        r1 = self._residual(h0, a, "res1")                                    # int32, fine scale
        h1 = self._ln(r1.reshape(bsz, T, D), "ln1", "int8").reshape(bsz * T, D)
        h1f = h1 if mid == "int8" else self._ln(r1.reshape(bsz, T, D), "ln1f", mid).reshape(bsz * T, D)
        f = L["ffn1"](acc, h1f)                                                  # int32 at the i-GELU scale
        g, _ = i_gelu(f, float(self.consts["gelu_scale"]))
        gq = rescale(g, self.c("gelu_m"), self.c("gelu_sh"), L["ffn2"].in_zero_point, mid).astype(np.int8)
        f2 = L["ffn2"](acc, gq)
        r2 = self._residual(h1.astype(np.int64) - self.c("ln1_zp"), f2, "res2")
        h2 = self._ln(r2.reshape(bsz, T, D), "ln2", "int8")
        pooled = rescale(np.sum(h2.astype(np.int64) - self.c("ln2_zp"), axis=1), self.c("pool_m"),
                         self.c("pool_sh"), L["cls"].in_zero_point, "int8")
        return L["cls"](acc, pooled.astype(np.int8))


def _ln_consts(tag, gamma, beta, s_out, zp, n=D):
    """Integer affine of i-LayerNorm's output (scale sqrt(n)/2**30) to ``(s_out, zp)``."""
    m, sh = dyadic(np.maximum(np.abs(gamma), 1e-12) * math.sqrt(n) / 2 ** 30 / s_out)
    return {f"{tag}_m": m, f"{tag}_sh": sh, f"{tag}_sign": np.where(gamma < 0, -1, 1),
            f"{tag}_beta": np.round(beta / s_out).astype(np.int64), f"{tag}_zp": zp}


def quantize_transformer(fmodel: FloatTransformer, calib_x, precision: str = "int8") -> Transformer:
    """Post-training quantization of a :class:`FloatTransformer`, calibrated on ``calib_x`` pixels."""
    check_precision(precision)
    rec = {}
    fmodel.forward(calib_x, rec)
    r = calib_ranges(rec)
    p = fmodel.params
    mid = "int4" if precision == "mixed" else "int8"
    sym = {k: act_qparams(*r[k], "int8", symmetric=True)[0] for k in ("emb", "q", "k", "v", "ctx", "attn", "ffn2")}
    s_ln1, z_ln1 = act_qparams(*r["ln1"], "int8")
    r4 = calib_ranges({k: rec[k] for k in ("ln1", "gelu")}, INT4_PERCENTILE) if mid == "int4" else r
    s_ln1f, z_ln1f = act_qparams(*r4["ln1"], mid)
    s_g, z_g = act_qparams(*r4["gelu"], mid)
    s_ln2, z_ln2 = act_qparams(*r["ln2"], "int8")
    s_pool, z_pool = act_qparams(*r["pool"], "int8")
    s_f1 = max(abs(v) for v in r["ffn1"]) / 2 ** GELU_BITS
    s_r1 = max(abs(v) for v in r["res1"]) / 2 ** RES_BITS
    s_r2 = max(abs(v) for v in r["res2"]) / 2 ** RES_BITS
    s_cls = max(abs(v) for v in r["cls"]) / 2 ** 15
    qkv_scale = np.repeat([sym["q"], sym["k"], sym["v"]], D)
    layers = [
        build_layer("emb", p["emb.w"], p["emb.b"], INPUT_SCALE, 0, sym["emb"], 0, "int8"),
        build_layer("qkv", p["qkv.w"], p["qkv.b"], sym["emb"], 0, qkv_scale, 0, "int8"),
        build_layer("out", p["out.w"], p["out.b"], sym["ctx"], 0, sym["attn"], 0, "int8"),
        build_layer("ffn1", p["ffn1.w"], p["ffn1.b"], s_ln1f, z_ln1f, s_f1, 0, mid, out_dtype="int32"),
        build_layer("ffn2", p["ffn2.w"], p["ffn2.b"], s_g, z_g, sym["ffn2"], 0, mid),
        build_layer("cls", p["cls.w"], p["cls.b"], s_pool, z_pool, s_cls, 0, "int8", out_dtype="int32"),
    ]
    _, s_gelu_out = i_gelu(np.zeros(1, np.int64), s_f1)
    consts = {"att_scale": sym["q"] * sym["k"] / math.sqrt(DH), "gelu_scale": s_f1}
    consts["ctx_m"], consts["ctx_sh"] = dyadic(sym["v"] * 2.0 ** -8 / sym["ctx"])
    consts["gelu_m"], consts["gelu_sh"] = dyadic(s_gelu_out / s_g)
    for tag, s_a, s_b, s_r in (("res1", sym["emb"], sym["attn"], s_r1), ("res2", s_ln1, sym["ffn2"], s_r2)):
        (consts[f"{tag}_m_a"], consts[f"{tag}_sh_a"]), (consts[f"{tag}_m_b"], consts[f"{tag}_sh_b"]) = \
            dyadic(s_a / s_r), dyadic(s_b / s_r)
    consts.update(_ln_consts("ln1", p["ln1.g"], p["ln1.b"], s_ln1, z_ln1))
    consts.update(_ln_consts("ln1f", p["ln1.g"], p["ln1.b"], s_ln1f, z_ln1f))
    consts.update(_ln_consts("ln2", p["ln2.g"], p["ln2.b"], s_ln2, z_ln2))
    consts["pool_m"], consts["pool_sh"] = dyadic(s_ln2 / T / s_pool)
    meta = dict(model="transformer", precision=precision, logit_scale=s_cls)
    return Transformer({l.name: l for l in layers}, consts, meta)


def load_transformer(precision: str = "int8") -> Transformer:
    """The trained integer Transformer (``"int8"`` or ``"mixed"`` int4/int8)."""
    return Transformer.load(WEIGHTS_DIR / f"transformer_{check_precision(precision)}.npz")


def load_transformer_float() -> FloatTransformer:
    """The float reference Transformer."""
    return FloatTransformer.load(WEIGHTS_DIR / "transformer_float.npz")
