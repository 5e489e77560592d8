"""Synthetic DLRM embedding traffic: Zipf or uniform row indices grouped into bags.

Modelled on DLRM's random data generator (``dlrm_data_pytorch.py``): every sample of a batch
looks up a bag of ``pooling_factor`` rows (fixed, or random in ``1..pooling_factor``), bags laid
out as flat ``indices`` plus ``offsets`` as :func:`torch.nn.functional.embedding_bag` takes them.
DLRM draws uniform indices; production traffic is heavy-tailed, so a finite-support Zipf
distribution is offered too (the usual ``alpha`` range: 0.9 .. 1.3; ``alpha <= 1`` is fine
because the support is finite).

Every function is a pure function of its ``rng`` argument: an ``int`` seed, or a
:class:`numpy.random.Generator` that is advanced.
"""
from __future__ import annotations

import numpy as np

__all__ = ["zipf_probabilities", "zipf_indices", "uniform_indices", "make_bags"]


def _generator(rng) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, (bool, np.bool_)) and rng >= 0:
        return np.random.default_rng(int(rng))
    raise TypeError(f"rng must be a non-negative int seed or a numpy.random.Generator, got {rng!r}")


def _count(value, name: str, minimum: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name}={value!r} is invalid: must be an integer >= {minimum}")
    return int(value)


def _alpha(alpha) -> float:
    if isinstance(alpha, (bool, np.bool_)) or not isinstance(alpha, (int, float, np.integer, np.floating)) \
            or not np.isfinite(alpha) or alpha < 0:
        raise ValueError(f"alpha={alpha!r} is invalid: must be a finite number >= 0 (typical: 0.9, 1.0, 1.3)")
    return float(alpha)


def zipf_probabilities(rows: int, alpha: float) -> np.ndarray:
    """Probability of each popularity rank: ``p[k] = (k + 1) ** -alpha / H``, ``k = 0 .. rows-1``.

    ``H = sum_k (k + 1) ** -alpha`` (the generalized harmonic number); ``alpha = 0`` is uniform.
    """
    rows = _count(rows, "rows", 1)
    weights = np.arange(1, rows + 1, dtype=np.float64) ** -_alpha(alpha)
    return weights / weights.sum()


def zipf_indices(rows: int, n: int, alpha: float, rng, permute=True) -> np.ndarray:
    """``n`` row indices drawn i.i.d. from a Zipf distribution over ``rows`` rows.

    Popularity rank ``k`` has probability :func:`zipf_probabilities` ``(rows, alpha)[k]``. Ranks
    map to rows through a permutation so that hot rows are scattered over the table (and over
    the row cache's sets) as in real tables: ``permute=True`` draws a random one from ``rng``
    first, ``False`` keeps rank ``k`` at row ``k``, an array gives the row of every rank.

    Returns
    -------
    ndarray of int64, shape (n,)
    """
    rows = _count(rows, "rows", 1)
    n = _count(n, "n", 0)
    probs = zipf_probabilities(rows, alpha)
    gen = _generator(rng)
    if isinstance(permute, (bool, np.bool_)):
        perm = gen.permutation(rows) if permute else np.arange(rows)
    else:
        perm = np.asarray(permute)
        if perm.shape != (rows,) or not np.issubdtype(perm.dtype, np.integer) \
                or not np.array_equal(np.sort(perm), np.arange(rows)):
            raise ValueError(f"permute must be True, False or a permutation of 0..{rows - 1}")
    cdf = np.cumsum(probs)
    ranks = np.minimum(np.searchsorted(cdf, gen.random(n) * cdf[-1], side="right"), rows - 1)
    return perm[ranks].astype(np.int64)


def uniform_indices(rows: int, n: int, rng) -> np.ndarray:
    """``n`` row indices drawn i.i.d. uniformly from ``0 .. rows-1`` (int64)."""
    rows = _count(rows, "rows", 1)
    n = _count(n, "n", 0)
    return _generator(rng).integers(0, rows, n, dtype=np.int64)


def make_bags(batch: int, pooling_factor: int, rows: int, *, dist: str = "zipf", alpha: float = 1.0,
              fixed: bool = True, unique: bool = False, rng=0, permute=True):
    """One batch of embedding-bag lookups for a table of ``rows`` rows.

    Parameters
    ----------
    batch : int
        Number of bags (samples).
    pooling_factor : int
        Indices per bag (1..100 in DLRM benchmarks); with ``fixed=False`` each bag's size is drawn
        uniformly from ``1 .. pooling_factor``.
    dist : {"zipf", "uniform"}
        Index distribution; ``alpha`` and ``permute`` as in :func:`zipf_indices` (the
        permutation is shared by the whole batch).
    unique : bool
        Drop repeated indices within a bag and sort it, as DLRM's generator does (``np.unique``);
        the bag then shrinks. Default False keeps exactly ``pooling_factor`` indices.
    rng : int or numpy.random.Generator

    Returns
    -------
    indices : ndarray of int64
    offsets : ndarray of int64, shape (batch,)
        Start of every bag; the last bag runs to the end of ``indices``.
    """
    batch = _count(batch, "batch", 0)
    pooling_factor = _count(pooling_factor, "pooling_factor", 1)
    rows = _count(rows, "rows", 1)
    if dist not in ("zipf", "uniform"):
        raise ValueError(f"dist={dist!r} is invalid: must be 'zipf' or 'uniform'")
    for name, flag in (("fixed", fixed), ("unique", unique)):
        if not isinstance(flag, (bool, np.bool_)):
            raise TypeError(f"{name} must be True or False, got {flag!r}")
    gen = _generator(rng)
    if fixed:
        lengths = np.full(batch, pooling_factor, np.int64)
    else:
        lengths = gen.integers(1, pooling_factor + 1, batch, dtype=np.int64)
    total = int(lengths.sum())
    if dist == "zipf":
        indices = zipf_indices(rows, total, alpha, gen, permute)
    else:
        indices = uniform_indices(rows, total, gen)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64) if batch else np.zeros(0, np.int64)
    if unique:
        bags = [np.unique(indices[s:s + k]) for s, k in zip(starts.tolist(), lengths.tolist())]
        lengths = np.array([b.size for b in bags], np.int64)
        indices = np.concatenate(bags).astype(np.int64) if bags else np.zeros(0, np.int64)
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64) if batch else starts
    return indices, starts
