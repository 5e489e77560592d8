"""Omega written from docs/rng.md alone, on randomgen's Philox4x32-10 (an independent implementation of
Random123): the oracle the sketch tests compare the golden model and the hardware with."""
import numpy as np
import pytest


def philox_blocks(key, counter, n_blocks):
    """``n_blocks`` 4-word blocks of Philox4x32-10 from ``counter`` on (randomgen pre-increments: start at c - 1)."""
    randomgen = pytest.importorskip("randomgen", reason="randomgen is not installed (pip install randomgen): "
                                    "it is the independent Philox oracle")
    c = sum(int(w) << (32 * i) for i, w in enumerate(counter))
    gen = randomgen.Philox(counter=(c - 1) % (1 << 128), key=key[0] | key[1] << 32, number=4, width=32)
    return gen.random_raw(4 * n_blocks).astype(np.uint64).reshape(n_blocks, 4)


def entry(w: int, dist: str, k: int, nnz=None, lo=None, hi=None) -> int:
    """One Omega entry from its word, as the table in docs/rng.md section 3 defines it."""
    if dist == "rademacher":
        return -1 if w >> 31 else 1
    if dist == "sparse_sign":
        t = (nnz << 31) // k
        return 0 if (w & 0x7FFFFFFF) >= t else (-1 if w >> 31 else 1)
    if dist == "uniform":
        return lo + ((w * (hi - lo + 1)) >> 32)
    if dist == "gaussian":
        return (w & 0xFF) + (w >> 8 & 0xFF) + (w >> 16 & 0xFF) + (w >> 24) - 510
    raise ValueError(dist)


def omega_spec(key, counter, K, k, dist="rademacher", **params):
    """Omega (K, k) int64: ``word(r, c) = block(counter + r * B + c // 4)[c % 4]``, ``B = ceil(k / 4)``."""
    B = -(-k // 4)
    blocks = philox_blocks(key, counter, K * B)
    return np.array([[entry(int(blocks[r * B + c // 4, c % 4]), dist, k, **params) for c in range(k)]
                     for r in range(K)], np.int64)
