"""A BERT-base encoder layer (hidden 768, 12 heads of 64, FFN 3072) on a sequence of 128, batch 1.

On the accelerator: the fused QKV projection, all heads' ``q k^T`` as one batched GEMM and their
``p v`` as another, the output projection and both FFN matmuls. On the host, I-BERT's integer
operations (:mod:`tridsa.sw.int_ops`): i-softmax, i-GELU, i-LayerNorm, and the residual adds.
"""
from __future__ import annotations

import numpy as np

from ..int_ops import i_gelu, i_layernorm, i_softmax
from ..quantize import to_int8
from ..requant import Requant

__all__ = ["bert", "SEQ", "HIDDEN", "HEADS", "FFN"]

SEQ, HIDDEN, HEADS, FFN = 128, 768, 12, 3072
HEAD = HIDDEN // HEADS
#: Scales of the int8 activations and of the int32 q k^T products (I-BERT: int8 q, k at scale ~1/32).
ACT_SCALE = 1.0 / 32
#: Scale of the FFN's int32 sums at the i-GELU (their std, ~1e5, is a few units).
GELU_SCALE = 2.0 ** -15


def _layernorm(x) -> np.ndarray:
    """i-LayerNorm of int32 residual sums -> int8 at scale 1/32 (gamma 1, beta 0)."""
    y, scale = i_layernorm(x)
    return to_int8(y, scale / ACT_SCALE)


def bert(rec, seq: int = SEQ) -> None:
    x = np.random.default_rng(11).integers(-96, 97, (seq, HIDDEN), dtype=np.int8)
    qkv = rec.linear("qkv", x, 3 * HIDDEN).reshape(seq, 3, HEADS, HEAD)
    q, k, v = (np.ascontiguousarray(qkv[:, j].transpose(1, 0, 2)) for j in range(3))      # (heads, seq, 64)
    scores = rec.matmul_batch("q.k^T", q, np.ascontiguousarray(k.transpose(0, 2, 1)))    # int32
    probs, _ = i_softmax(scores, ACT_SCALE * ACT_SCALE / np.sqrt(HEAD), out_bits=8)      # uint8, scale 2**-8
    ctx = rec.matmul_batch("p.v", probs.astype(np.uint8), v, Requant.from_scale(1.0 / 256, 0, "half_up"), "int8")
    ctx = np.ascontiguousarray(ctx.transpose(1, 0, 2)).reshape(seq, HIDDEN)
    attn = rec.linear("out", ctx, HIDDEN)
    h1 = _layernorm(x.astype(np.int64) + attn)
    f = rec.linear("ffn1", h1, FFN, out_dtype="int32")
    g, g_scale = i_gelu(f, GELU_SCALE)
    g8 = to_int8(g, g_scale / ACT_SCALE)
    f2 = rec.linear("ffn2", g8, HIDDEN)
    _layernorm(h1.astype(np.int64) + f2)
