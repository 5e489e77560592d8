"""Sketch matrices Omega as pure functions of a Philox key and counter: the NumPy golden model.

The sketch engine computes ``Y = A @ Omega`` with ``A`` (M x K) streamed row by row, so for every
element ``A[m, r]`` it needs row ``r`` of ``Omega`` (K x k). Omega is never stored: hardware and this
module regenerate it from ``(key, counter)``, so anyone can rebuild it in NumPy (the idea of RandBLAS;
the layout and the integer distributions below are tridsa's own, not RandBLAS's).

Layout (one Philox block per (row, 4 columns))
----------------------------------------------
With ``B = ceil(k / 4)`` blocks per row, entry ``(r, c)`` is made from the single 32-bit word::

    word(r, c) = philox4x32_10(counter + r * B + c // 4, key)[c % 4]      (128-bit counter add)

Every row starts on a block boundary, so the RNG produces Omega row by row in the order the engine
consumes it; columns ``k .. 4B - 1`` of the last block of a row are discarded. When ``k`` is a multiple
of 4 this is exactly word ``r * k + c`` of ``random_uint32(key, counter, K * k)``.

Distributions (each entry a function of its own word only, integer valued)
--------------------------------------------------------------------------
``"rademacher"``
    ``-1`` if bit 31 of the word is set, else ``+1``.
``"sparse_sign"`` (parameter ``nnz``: expected nonzeros per row, 1 <= nnz <= k)
    With the threshold ``t = (nnz << 31) // k``: ``0`` if ``(word & 0x7FFFFFFF) >= t``, else the
    Rademacher sign of bit 31. Entries are independent, nonzero with probability ``p = t / 2**31``
    (``nnz / k`` up to ``2**-31``); the nonzero count of a row is Binomial(k, p). ``nnz == k`` gives
    Rademacher. (Scale by ``sqrt(k / nnz)`` in floating point when an isometry is wanted.)
``"uniform"`` (parameters ``lo <= hi``, both int32)
    ``lo + ((word * (hi - lo + 1)) >> 32)`` (multiply-high, computed exactly in 64 bits). Each value
    is hit by ``floor`` or ``ceil`` of ``2**32 / (hi - lo + 1)`` words: relative bias below
    ``(hi - lo + 1) / 2**32``, exactly uniform when the span is a power of two.
``"gaussian"``
    Irwin-Hall with 4 terms: the sum of the word's four bytes minus 510. Integer in [-510, 510], mean
    0, variance exactly 21845 (standard deviation 147.80), excess kurtosis -0.30001; its CDF is within
    0.0074 of the normal CDF N(0, 21845) (with continuity correction; 0.0084 without), and tails are
    cut at 3.45 standard deviations (P(|x| > 3 sigma) = 0.00043 instead of 0.0027).

:func:`dist_params` turns a distribution and its parameters into the register values the
gateware mapper (:mod:`tridsa.hw.sketch_dist`) takes, so both sides share one definition.
"""
from __future__ import annotations

import numbers

import numpy as np

from ..spec.sketch_layout import DISTRIBUTIONS, GAUSSIAN_BOUND
from .philox import check_counter, check_key, counter_range, philox4x32_10

__all__ = ["blocks_per_row", "omega_words",
           "rademacher", "sparse_sign", "sparse_threshold", "uniform", "gaussian", "dist_params",
           "map_words", "omega"]



def _words(words) -> np.ndarray:
    arr = np.asarray(words)
    if arr.dtype != np.uint32:
        raise TypeError(f"words must be a numpy uint32 array, got dtype {arr.dtype}")
    return arr


def _int(value, name: str, lo: int, hi: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) \
            or not lo <= int(value) <= hi:
        raise ValueError(f"{name} must be an integer in [{lo}, {hi}], got {value!r}")
    return int(value)


def blocks_per_row(k: int) -> int:
    """Philox blocks per row of Omega: ``ceil(k / 4)``."""
    return (_int(k, "k", 1, 1 << 30) + 3) // 4


def omega_words(key, counter, K: int, k: int) -> np.ndarray:
    """The uint32 word behind every entry of Omega, shape (K, k) (see the module layout)."""
    key, counter = check_key(key), check_counter(counter)
    K = _int(K, "K", 1, 1 << 30)
    B = blocks_per_row(k)
    blocks = philox4x32_10(counter_range(counter, 0, K * B), key)
    return blocks.reshape(K, 4 * B)[:, :k].copy()


def rademacher(words) -> np.ndarray:
    """+1 / -1 per word: -1 when bit 31 is set. int32, same shape."""
    w = _words(words)
    return (1 - 2 * (w >> np.uint32(31)).astype(np.int32)).astype(np.int32)


def sparse_threshold(nnz: int, k: int) -> int:
    """Threshold ``t = (nnz << 31) // k`` of "sparse_sign": an entry is nonzero iff its low 31 bits < t."""
    k = _int(k, "k", 1, 1 << 30)
    nnz = _int(nnz, "nnz", 1, k)
    return (nnz << 31) // k


def sparse_sign(words, threshold: int) -> np.ndarray:
    """0 unless ``word & 0x7FFFFFFF < threshold``, else the Rademacher sign. int32, same shape."""
    t = _int(threshold, "threshold", 0, 1 << 31)
    w = _words(words)
    keep = (w & np.uint32(0x7FFFFFFF)).astype(np.int64) < t
    return np.where(keep, rademacher(w), 0).astype(np.int32)


def uniform(words, lo: int, hi: int) -> np.ndarray:
    """``lo + ((word * (hi - lo + 1)) >> 32)``: integers in [lo, hi]. int32, same shape."""
    lo = _int(lo, "lo", -(1 << 31), (1 << 31) - 1)
    hi = _int(hi, "hi", lo, (1 << 31) - 1)
    span = hi - lo + 1  # 1 .. 2**32
    w = _words(words).astype(np.uint64)
    if span == 1 << 32:
        q = w
    else:
        q = (w * np.uint64(span)) >> np.uint64(32)  # product < 2**64: exact
    return (q.astype(np.int64) + lo).astype(np.int32)


def gaussian(words) -> np.ndarray:
    """Sum of the four bytes of each word minus 510: approximately N(0, 21845). int32, same shape."""
    w = _words(words)
    total = np.zeros(w.shape, dtype=np.int32)
    for shift in (0, 8, 16, 24):
        total += ((w >> np.uint32(shift)) & np.uint32(0xFF)).astype(np.int32)
    return total - GAUSSIAN_BOUND


def dist_params(dist: str, k: int, **params) -> dict:
    """Register values of the gateware mapper for ``dist`` with ``params``.

    Returns a dict with ``code`` (index in :data:`DISTRIBUTIONS`), ``threshold`` (sparse_sign),
    ``lo`` and ``span`` (uniform: ``hi - lo + 1``, up to 2**32); unused fields are 0.
    Raises ValueError for an unknown distribution, a missing or unexpected parameter.
    """
    if dist not in DISTRIBUTIONS:
        raise ValueError(f"dist must be one of {', '.join(DISTRIBUTIONS)}, got {dist!r}")
    wanted = {"rademacher": set(), "sparse_sign": {"nnz"}, "uniform": {"lo", "hi"}, "gaussian": set()}[dist]
    if set(params) != wanted:
        raise ValueError(f"dist {dist!r} takes parameters {sorted(wanted) or 'none'}, got {sorted(params)}")
    regs = {"code": DISTRIBUTIONS.index(dist), "threshold": 0, "lo": 0, "span": 0}
    if dist == "sparse_sign":
        regs["threshold"] = sparse_threshold(params["nnz"], k)
    elif dist == "uniform":
        lo = _int(params["lo"], "lo", -(1 << 31), (1 << 31) - 1)
        hi = _int(params["hi"], "hi", lo, (1 << 31) - 1)
        regs["lo"], regs["span"] = lo, hi - lo + 1
    return regs


def map_words(words, dist: str, k: int, **params) -> np.ndarray:
    """Map uint32 ``words`` element-wise to Omega entries of ``dist`` (``k`` sets sparse_sign's threshold)."""
    regs = dist_params(dist, k, **params)
    if dist == "rademacher":
        return rademacher(words)
    if dist == "sparse_sign":
        return sparse_sign(words, regs["threshold"])
    if dist == "uniform":
        return uniform(words, regs["lo"], regs["lo"] + regs["span"] - 1)
    return gaussian(words)


def omega(key, counter, K: int, k: int, dist: str = "rademacher", **params) -> np.ndarray:
    """The sketch matrix Omega, int32 (K, k): ``map_words(omega_words(key, counter, K, k), dist, k, **params)``.

    Examples
    --------
    >>> omega((1, 2), (0, 0, 0, 0), 3, 4, "sparse_sign", nnz=2).shape
    (3, 4)
    """
    dist_params(dist, k, **params)  # validate before generating words
    return map_words(omega_words(key, counter, K, k), dist, k, **params)
