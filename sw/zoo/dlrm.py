"""DLRM with the MLPerf Criteo shapes: bottom MLP 13-512-256-128, 26 tables of dimension 128, dot
interaction, top MLP 1024-1024-512-256-1, batch 128 by default.

Table row counts are Criteo Terabyte's (:data:`CRITEO_ROWS`, up to 40 M), capped so that all tables
fit ``table_bytes`` of host memory (default: a quarter of the available memory, at most 2 GiB); the
tables stay on the host and every call stages only the rows it touches (FBGEMM's UVM-cache idea,
:func:`tridsa.sw.gather_ops.run_gather`). Traffic: Zipf (alpha 1.05) row ids, the multi-hot pooling
factors of MLPerf's DLRMv2 Criteo dataset (:data:`POOLING`). The embedding bags of all 26 tables run
as one table-batched call whose int8 output the engine quantizes (``out_shift``, the int8 pooled
embeddings of quantized inference DLRMs); the pairwise dot products of the 27 vectors of every sample run as one
batched GEMM.
"""
from __future__ import annotations

import numpy as np

from ..dlrm_traffic import zipf_indices
from ..host_memory import available_bytes
from ..quantize import to_int8

__all__ = ["dlrm", "CRITEO_ROWS", "POOLING", "BOTTOM", "TOP", "DIM"]

#: Rows of the 26 Criteo Terabyte tables (MLPerf DLRM, day 0-23, no hashing cap).
CRITEO_ROWS = (39884406, 39043, 17289, 7420, 20263, 3, 7120, 1543, 63, 38532951, 2953546, 403346, 10, 2208,
               11938, 155, 4, 976, 14, 39979771, 25641295, 39664984, 585935, 12972, 108, 36)
#: Lookups per sample of every table (MLPerf DLRMv2 multi-hot Criteo).
POOLING = (3, 2, 1, 2, 6, 1, 1, 1, 1, 7, 3, 8, 1, 6, 9, 5, 1, 1, 1, 12, 100, 27, 10, 3, 1, 1)
BOTTOM, TOP, DIM = (512, 256, 128), (1024, 1024, 512, 256, 1), 128
#: The pooled embeddings leave the gather engine as int8, scaled by 2**-POOLED_SHIFT (a narrow GATHER).
POOLED_SHIFT = 6


def table_rows(budget: int) -> list:
    """Row counts of the tables, the largest capped (all equally) so the tables fit ``budget`` bytes."""
    rows = np.array(CRITEO_ROWS, np.int64)
    if rows.sum() * DIM <= budget:
        return rows.tolist()
    lo, hi = 1, int(rows.max())
    while lo < hi:                                   # the largest cap whose tables fit the budget
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if np.minimum(rows, mid).sum() * DIM <= budget else (lo, mid - 1)
    return np.minimum(rows, lo).tolist()


def dlrm(rec, batch: int = 128, table_bytes: int | None = None) -> None:
    budget = table_bytes if table_bytes is not None else min(available_bytes() // 4, 2 << 30)
    rng = np.random.default_rng(3)
    dense = rng.integers(0, 128, (batch, 13), dtype=np.int8)
    x = dense
    for i, n in enumerate(BOTTOM):
        x = rec.linear(f"bottom{i}", x, n, relu=True)
    tables, indices, offsets = [], [], []
    for t, rows in enumerate(table_rows(budget)):
        gen = np.random.default_rng(1000 + t)
        tables.append(np.frombuffer(gen.bytes(rows * DIM), np.int8).reshape(rows, DIM))
        indices.append(zipf_indices(rows, batch * POOLING[t], 1.05, gen))
        offsets.append(np.arange(batch) * POOLING[t])
    # (batch, 26, 128) int8: the pooled sums scaled by 1/64 (round half up, saturated) in the gather engine
    pooled = rec.embedding_bags("embeddings", tables, indices, offsets, out_shift=POOLED_SHIFT)
    vectors = np.concatenate([x[:, None, :], pooled], axis=1)                     # (batch, 27, 128)
    dots = rec.matmul_batch("interaction", vectors, np.ascontiguousarray(vectors.transpose(0, 2, 1)))
    upper = np.triu_indices(vectors.shape[1], 1)
    z = np.concatenate([x, to_int8(dots[:, upper[0], upper[1]], 1.0 / 512)], axis=1)   # (batch, 128 + 351)
    for i, n in enumerate(TOP):
        z = rec.linear(f"top{i}", z, n, relu=i < len(TOP) - 1, out_dtype="int8" if i < len(TOP) - 1 else "int32")
