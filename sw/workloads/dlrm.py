"""A tiny DLRM (the Criteo "Kaggle" configuration scaled down), integer-only.

::

    dense (4 features, fixed point scale 1/16)   sparse (4 tables: 200, 100, 50, 20 rows; dim 8)
    bot1  linear 4->16, ReLU                      emb_f  embedding_bag(sum), int8 rows -> int32
    bot2  linear 16->8, ReLU          -> b        (table 0 is multi-hot: bags of 1..3 ids)
    interaction: z = [b, e_0..e_3]; the 10 dot products z_i . z_j (i < j) in integer NumPy,
                 each dyadically rescaled, concatenated with b                      -> 18, int8
    top1  linear 18->16, ReLU;  top2 linear 16->1                                   -> int32 logit

Embedding tables are int8 with one symmetric scale per table. All four tables' bags go to ONE
``acc.embedding_bag`` call, table-batched as FBGEMM's TBE (:class:`tridsa.sw.gather_ops.TableBatch`:
tables stacked, indices shifted, bags sample-major), so the gather engine runs one GATHER per step.
``precision="mixed"`` runs bot2 and top1 in int4 (weights and inputs).

No Criteo data is available offline, so :func:`synthetic_ctr` generates a click-through task
deterministically: log-count dense features, Zipf-distributed categorical ids (hot ids scattered
over the table by a fixed permutation), and clicks drawn from a hidden factorization model with
per-id biases and pairwise latent interactions. Its Bayes-optimal accuracy is well below 100%.
"""
from __future__ import annotations

import numpy as np

from ..gather_ops import TableBatch
from ..quantize import act_qparams, dyadic, quantize_weights, rescale
from .base import INT4_PERCENTILE, WEIGHTS_DIR, FloatModel, QuantModel, build_layer, calib_ranges, check_precision

__all__ = ["DLRM", "FloatDLRM", "auc", "load_dlrm", "load_dlrm_float", "quantize_dlrm", "synthetic_ctr"]

DENSE = 4
TABLE_ROWS = (200, 100, 50, 20)
EMB_DIM = 8
MAX_BAG = 3
DENSE_SCALE = 1.0 / 16
ZIPF_A = 1.1
_PAIRS = [(i, j) for i in range(1 + len(TABLE_ROWS)) for j in range(i + 1, 1 + len(TABLE_ROWS))]


def _zipf_ids(rng, n, rows, perm):
    p = 1.0 / np.arange(1, rows + 1) ** ZIPF_A
    return perm[rng.choice(rows, size=n, p=p / p.sum())]


def synthetic_ctr(n: int, seed: int = 0, with_logits: bool = False):
    """Deterministic synthetic click-through samples.

    Returns
    -------
    dense : (n, 4) int8
        ``round(16 * log1p(count))`` of geometric counts, clipped to 0..127 (scale 1/16).
    sparse : list of (indices, offsets) int64 pairs, one per table (``embedding_bag`` layout).
    clicks : (n,) int64 in {0, 1}.
    logits : (n,) float64, only if ``with_logits``
        The hidden model's click logits (the Bayes-optimal scores).
    """
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n={n!r} is invalid: must be a positive integer")
    truth = np.random.default_rng(20210601)          # the hidden model: the same for every seed
    w_dense = truth.normal(0, 0.8, DENSE)
    perms = [truth.permutation(r) for r in TABLE_ROWS]
    bias = [truth.normal(0, 0.8, r) for r in TABLE_ROWS]
    latent = [truth.normal(0, 0.5, (r, 4)) for r in TABLE_ROWS]
    rng = np.random.default_rng(seed)
    counts = rng.geometric(rng.uniform(0.05, 0.6, (n, 1)) * np.array([1.0, 0.5, 0.3, 0.8]), (n, DENSE)) - 1
    dense = np.clip(np.round(16 * np.log1p(counts)), 0, 127).astype(np.int8)
    x = dense / 16.0
    logit = (x - 1.5) @ w_dense - 0.8
    vecs, sparse = [], []
    for f, rows in enumerate(TABLE_ROWS):
        lengths = rng.integers(1, MAX_BAG + 1, n) if f == 0 else np.ones(n, dtype=np.int64)
        idx = _zipf_ids(rng, int(lengths.sum()), rows, perms[f])
        offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        sparse.append((idx.astype(np.int64), offsets))
        logit += np.add.reduceat(bias[f][idx], offsets) / np.sqrt(lengths)
        vecs.append(np.add.reduceat(latent[f][idx], offsets, axis=0))
    for i in range(len(vecs)):
        for j in range(i + 1, len(vecs)):
            logit += np.sum(vecs[i] * vecs[j], axis=1)
    clicks = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    return (dense, sparse, clicks, logit) if with_logits else (dense, sparse, clicks)


def auc(scores, labels) -> float:
    """Area under the ROC curve (ties count one half)."""
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels)
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    s = scores[order]
    # average ranks of ties
    _, first, counts = np.unique(s, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    pos = labels == 1
    npos, nneg = int(pos.sum()), int((~pos).sum())
    return float((ranks[pos].sum() - npos * (npos + 1) / 2) / (npos * nneg))


def _check_inputs(dense, sparse):
    d = np.asarray(dense)
    if not np.issubdtype(d.dtype, np.integer) or d.ndim != 2 or d.shape[1] != DENSE:
        raise ValueError(f"dense must be an integer array of shape (B, {DENSE}) (got {d.dtype} {d.shape})")
    if len(sparse) != len(TABLE_ROWS):
        raise ValueError(f"sparse must hold {len(TABLE_ROWS)} (indices, offsets) pairs (got {len(sparse)})")
    for f, (idx, off) in enumerate(sparse):
        if len(off) != len(d):
            raise ValueError(f"sparse[{f}] has {len(off)} bags for {len(d)} samples")
    return d.astype(np.int8)


def _bag_sum(table, idx, off):
    ends = np.append(off[1:], len(idx))
    cs = np.concatenate([np.zeros((1, table.shape[1])), np.cumsum(table[idx], axis=0)])
    return cs[ends] - cs[off]


class FloatDLRM(FloatModel):
    """Float reference: ``bot1/bot2/top1/top2.w`` (in, out), ``.b``, tables ``emb0..emb3``."""

    def forward(self, dense, sparse, record=None):
        p = self.params
        rec = {} if record is None else record
        x = _check_inputs(dense, sparse).astype(np.float64) * DENSE_SCALE
        rec["bot1"] = h = np.maximum(x @ p["bot1.w"] + p["bot1.b"], 0)
        rec["bot2"] = b = np.maximum(h @ p["bot2.w"] + p["bot2.b"], 0)
        z = [b]
        for f, (idx, off) in enumerate(sparse):
            rec[f"emb{f}"] = e = _bag_sum(p[f"emb{f}"], np.asarray(idx), np.asarray(off))
            z.append(e)
        dots = np.stack([np.sum(z[i] * z[j], axis=1) for i, j in _PAIRS], axis=1)
        rec["top_in"] = t = np.concatenate([b, dots], axis=1)
        rec["top1"] = h = np.maximum(t @ p["top1.w"] + p["top1.b"], 0)
        rec["top2"] = out = (h @ p["top2.w"] + p["top2.b"])[:, 0]
        return out


class DLRM(QuantModel):
    """Integer DLRM; ``forward(acc, dense, sparse)`` returns (B,) int32 click logits.

    ``forward`` is ``top(acc, bottom(acc, dense), embeddings(acc, sparse))``; the three stages are
    public so that a model-parallel runner (:mod:`tridsa.sw.multichip`) can place them on different
    accelerators. ``bottom`` and ``top`` are row-wise (sample ``i`` of the output depends only on
    sample ``i`` of the input), so any split of the batch gives the same rows.
    """

    def forward(self, acc, dense, sparse):
        d = _check_inputs(dense, sparse)
        return self.top(acc, self.bottom(acc, d), self.embeddings(acc, sparse))

    def bottom(self, acc, dense):
        """Bottom MLP of int8 dense features (B, 4) -> (B, 8) int64, its output zero point removed."""
        L = self.qlayers
        return L["bot2"](acc, L["bot1"](acc, dense)).astype(np.int64) - L["bot2"].out_zero_point

    def embedding_tables(self):
        """The int8 embedding tables, in feature order."""
        return [self.consts[f"emb{f}"] for f in range(len(TABLE_ROWS))]

    def embeddings(self, acc, sparse):
        """Pooled embeddings (B, 4, 8) int32 of the sparse features: one table-batched gather."""
        tables = TableBatch(self.embedding_tables())
        return tables(acc, [np.asarray(idx) for idx, _ in sparse], [np.asarray(off) for _, off in sparse], "sum")

    def top(self, acc, b, emb):
        """Dot interaction of ``bottom``'s (B, 8) and the pooled (B, 4, 8) -> top MLP -> (B,) int32 logits."""
        L = self.qlayers
        mid = L["bot2"].precision
        z = [rescale(b, self.c("zb_m"), self.c("zb_sh"), 0, "int8")]
        for f in range(len(TABLE_ROWS)):
            z.append(rescale(emb[:, f], self.c(f"z{f + 1}_m"), self.c(f"z{f + 1}_sh"), 0, "int8"))
        z = [v.astype(np.int64) for v in z]
        zp = L["top1"].in_zero_point
        cols = [rescale(b, self.c("tb_m"), self.c("tb_sh"), zp, mid)]
        for k, (i, j) in enumerate(_PAIRS):
            dot = np.sum(z[i] * z[j], axis=1, keepdims=True)
            cols.append(rescale(dot, self.consts["dot_m"][k], self.consts["dot_sh"][k], zp, mid))
        t = np.concatenate(cols, axis=1).astype(np.int8)
        return L["top2"](acc, L["top1"](acc, t))[:, 0]

    def click_probability(self, logits) -> np.ndarray:
        """Integer sigmoid of the logits: click probability in Q15 (scale 2**-15)."""
        from ..int_ops import i_sigmoid
        return i_sigmoid(np.asarray(logits, dtype=np.int64), float(self.meta["logit_scale"]), 15)[0]


def quantize_dlrm(fmodel: FloatDLRM, dense, sparse, precision: str = "int8") -> DLRM:
    """Post-training quantization of a :class:`FloatDLRM`, calibrated on the given samples."""
    check_precision(precision)
    rec = {}
    fmodel.forward(dense, sparse, rec)
    r = calib_ranges(rec)
    p = fmodel.params
    mid = "int4" if precision == "mixed" else "int8"
    r4 = calib_ranges({k: rec[k] for k in ("bot1", "top_in")}, INT4_PERCENTILE) if mid == "int4" else r
    s1, z1 = act_qparams(*r4["bot1"], mid)
    s2, z2 = act_qparams(*r["bot2"], "int8")
    st, zt = act_qparams(*r4["top_in"], mid)
    s3, z3 = act_qparams(*r["top1"], "int8")
    so = max(abs(v) for v in r["top2"]) / 2 ** 15
    layers = [
        build_layer("bot1", p["bot1.w"], p["bot1.b"], DENSE_SCALE, 0, s1, z1, "int8", True, mid),
        build_layer("bot2", p["bot2.w"], p["bot2.b"], s1, z1, s2, z2, mid, True, "int8"),
        build_layer("top1", p["top1.w"], p["top1.b"], st, zt, s3, z3, mid, True, "int8"),
        build_layer("top2", p["top2.w"], p["top2.b"], s3, z3, so, 0, "int8", False, "int32"),
    ]
    consts, zs = {}, [act_qparams(*r["bot2"], "int8", symmetric=True)[0]]
    consts["zb_m"], consts["zb_sh"] = dyadic(s2 / zs[0])
    consts["tb_m"], consts["tb_sh"] = dyadic(s2 / st)
    for f in range(len(TABLE_ROWS)):
        q, (s_tab,) = quantize_weights(p[f"emb{f}"].reshape(1, -1), 8, axis=0)
        consts[f"emb{f}"] = q.reshape(p[f"emb{f}"].shape)
        zs.append(act_qparams(*r[f"emb{f}"], "int8", symmetric=True)[0])
        consts[f"z{f + 1}_m"], consts[f"z{f + 1}_sh"] = dyadic(s_tab / zs[-1])
    consts["dot_m"], consts["dot_sh"] = dyadic(np.array([zs[i] * zs[j] / st for i, j in _PAIRS]))
    meta = dict(model="dlrm", precision=precision, logit_scale=so)
    return DLRM({l.name: l for l in layers}, consts, meta)


def load_dlrm(precision: str = "int8") -> DLRM:
    """The trained integer DLRM (``"int8"`` or ``"mixed"`` int4/int8)."""
    return DLRM.load(WEIGHTS_DIR / f"dlrm_{check_precision(precision)}.npz")


def load_dlrm_float() -> FloatDLRM:
    """The float reference DLRM."""
    return FloatDLRM.load(WEIGHTS_DIR / "dlrm_float.npz")
