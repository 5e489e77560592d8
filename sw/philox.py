"""Philox4x32-10 counter-based random number generator: the NumPy golden model.

Bit-exact with Random123's ``philox4x32`` with 10 rounds (the generator RandBLAS uses). A block is a
pure function of a 128-bit counter and a 64-bit key::

    block = philox4x32_10(counter, key)        # 4 uint32 words

Counters are four uint32 words, word 0 least significant; ``counter_add`` does 128-bit arithmetic
(carries across all words, wraps modulo 2**128). The word stream of ``(key, counter)`` is
``block(counter)[0..3], block(counter + 1)[0..3], ...`` and ``random_uint32`` returns its first ``n``
words. The gateware (:mod:`tridsa.hw.philox`) computes the same function, one block per cycle per lane.

The round function and its constants: :mod:`tridsa.spec.philox`.
"""
from __future__ import annotations

import numbers

import numpy as np

from ..spec.philox import M0, M1, ROUNDS, W0, W1

__all__ = ["philox4x32_10", "counter_add", "random_uint32", "check_key", "check_counter"]

_MASK32 = np.uint64(0xFFFFFFFF)


def _check_words(value, count: int, name: str) -> np.ndarray:
    """Validate ``count`` integers in [0, 2**32) and return them as a uint32 array."""
    message = f"{name} must be {count} integers in [0, 2**32), got {value!r}"
    if isinstance(value, (str, bytes)) or np.ndim(value) != 1:
        raise ValueError(message)
    items = list(value)
    if len(items) != count:
        raise ValueError(message)
    for item in items:
        if isinstance(item, (bool, np.bool_)) or not isinstance(item, numbers.Integral):
            raise ValueError(message)
        if not 0 <= int(item) < 1 << 32:
            raise ValueError(message)
    return np.array([int(item) for item in items], dtype=np.uint32)


def check_key(key) -> np.ndarray:
    """Return ``key`` (two integers in [0, 2**32)) as uint32[2]; raise ValueError naming ``key``."""
    return _check_words(key, 2, "key")


def check_counter(counter) -> np.ndarray:
    """Return ``counter`` (four integers in [0, 2**32), word 0 least significant) as uint32[4]."""
    return _check_words(counter, 4, "counter")


def _as_counters(counters) -> np.ndarray:
    arr = np.asarray(counters)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"counters must have shape (n, 4), got shape {arr.shape}")
    if arr.dtype == np.uint32:
        return arr
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"counters must be integers in [0, 2**32), got dtype {arr.dtype}")
    if arr.size and (arr.min() < 0 or arr.max() > 0xFFFFFFFF):
        raise ValueError("counters must be integers in [0, 2**32)")
    return arr.astype(np.uint32)


def philox4x32_10(counters, key) -> np.ndarray:
    """Philox4x32-10 blocks of many counters under one key.

    Parameters
    ----------
    counters : array_like, shape (n, 4)
        Integers in [0, 2**32); column 0 is the least significant word.
    key : sequence of 2 ints
        Integers in [0, 2**32).

    Returns
    -------
    numpy.ndarray
        uint32, shape (n, 4): ``out[i]`` is Random123's ``philox4x32_R(10, counters[i], key)``.
    """
    ctr = _as_counters(counters).astype(np.uint64)
    k0, k1 = (np.uint64(int(x)) for x in check_key(key))
    c0, c1, c2, c3 = ctr[:, 0], ctr[:, 1], ctr[:, 2], ctr[:, 3]
    m0, m1 = np.uint64(M0), np.uint64(M1)
    for _ in range(ROUNDS):
        p0 = m0 * c0  # exact: both factors < 2**32
        p1 = m1 * c2
        c0, c1, c2, c3 = ((p1 >> np.uint64(32)) ^ c1 ^ k0, p1 & _MASK32,
                          (p0 >> np.uint64(32)) ^ c3 ^ k1, p0 & _MASK32)
        k0 = (k0 + np.uint64(W0)) & _MASK32
        k1 = (k1 + np.uint64(W1)) & _MASK32
    return np.stack([c0, c1, c2, c3], axis=1).astype(np.uint32)


def _to_int(counter4: np.ndarray) -> int:
    return sum(int(w) << (32 * i) for i, w in enumerate(counter4))


def counter_add(counter4, i: int) -> np.ndarray:
    """128-bit ``counter4 + i`` modulo 2**128 (``i`` may be any integer, also negative).

    Word 0 is least significant; a carry out of word ``j`` goes into word ``j + 1``.
    Returns uint32[4].
    """
    ctr = check_counter(counter4)
    if isinstance(i, (bool, np.bool_)) or not isinstance(i, numbers.Integral):
        raise ValueError(f"i must be an integer, got {i!r}")
    value = (_to_int(ctr) + int(i)) % (1 << 128)
    return np.array([(value >> (32 * j)) & 0xFFFFFFFF for j in range(4)], dtype=np.uint32)


def counter_range(counter4, start: int, count: int) -> np.ndarray:
    """Counters ``counter4 + start + j`` for ``j`` in ``range(count)`` as uint32 (count, 4), mod 2**128."""
    base = counter_add(counter4, start)
    lo = np.uint64(int(base[0]) | int(base[1]) << 32)
    hi = np.uint64(int(base[2]) | int(base[3]) << 32)
    offs = np.arange(count, dtype=np.uint64)
    low = lo + offs  # wraps modulo 2**64
    high = hi + (low < lo).astype(np.uint64)  # carry into the upper 64 bits, wraps too
    out = np.empty((count, 4), dtype=np.uint32)
    out[:, 0] = (low & _MASK32).astype(np.uint32)
    out[:, 1] = (low >> np.uint64(32)).astype(np.uint32)
    out[:, 2] = (high & _MASK32).astype(np.uint32)
    out[:, 3] = (high >> np.uint64(32)).astype(np.uint32)
    return out


def random_uint32(key, counter, n: int) -> np.ndarray:
    """The first ``n`` words of the stream ``block(counter)[0..3], block(counter + 1)[0..3], ...``.

    Parameters
    ----------
    key : sequence of 2 ints in [0, 2**32)
    counter : sequence of 4 ints in [0, 2**32), word 0 least significant
    n : int
        Number of words, positive.

    Returns
    -------
    numpy.ndarray
        uint32, shape (n,).
    """
    key = check_key(key)
    counter = check_counter(counter)
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, numbers.Integral) or n <= 0:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    blocks = philox4x32_10(counter_range(counter, 0, (int(n) + 3) // 4), key)
    return blocks.reshape(-1)[:n].copy()
