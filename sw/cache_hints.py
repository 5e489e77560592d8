"""Hot-row profiling for the gather engine's row cache: table layout and per-lookup bypass hints.

The driver sees every index of an ``embedding_bag`` call before it runs, so it can do what
recommendation systems' hot-embedding caches do with frequency profiles: keep the cache for the
rows used most. Under Zipf (independent reference) traffic the best policy that knows only
frequencies is to hold the ``capacity`` most frequent rows (LFU); Belady's MIN, which also knows
*when* every row comes back, is only a few percent better (see ``docs/gather.md``).

:func:`hot_plan` returns

* a **table layout**: table row ``order[p]`` is stored at position ``p``, rows sorted by falling
  frequency. The cache's set is ``position % sets``, so the ``capacity = sets * ways`` hottest rows
  fill every set with exactly ``ways`` rows. The pooled result does not depend on the layout (the
  indices are renamed with it), only the cache's set mapping does;
* an **allocate flag per lookup**: True for the hot rows (the ``capacity`` most frequent ones that
  are used at least twice), False (the bypass hint) for every other row. Hot rows never evict each
  other (at most ``ways`` per set) and cold rows never allocate, so after its first miss a hot row
  hits until the GATHER ends.
"""
from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["HotPlan", "hot_plan", "identity_plan"]


@dataclasses.dataclass(frozen=True)
class HotPlan:
    """Layout and hints of one call.

    Attributes
    ----------
    order : ndarray of int64, shape (num_rows,)
        ``order[p]`` is the table row stored at position ``p``.
    position : ndarray of int64, shape (num_rows,)
        Inverse of ``order``: the position of table row ``r``.
    hot : ndarray of bool, shape (num_rows,)
        Per *position*: the row there is allocated in the cache on a miss.
    """
    order: np.ndarray
    position: np.ndarray
    hot: np.ndarray

    def lookups(self, indices) -> tuple:
        """``(positions, allocate)`` of table-row indices: what the GATHER's index words hold."""
        pos = self.position[np.asarray(indices, np.int64)]
        return pos, self.hot[pos]


def identity_plan(num_rows: int) -> HotPlan:
    """Plain LRU: the table in its own order, every lookup allocates."""
    ident = np.arange(num_rows, dtype=np.int64)
    return HotPlan(ident, ident, np.ones(num_rows, bool))


def hot_plan(indices, num_rows: int, capacity: int) -> HotPlan:
    """Profile ``indices`` (rows of a ``num_rows``-row table, already validated) for a cache of
    ``capacity`` rows; ties in frequency go to the lower row index (deterministic)."""
    counts = np.bincount(np.asarray(indices, np.int64), minlength=num_rows)
    order = np.argsort(-counts, kind="stable").astype(np.int64)
    position = np.empty(num_rows, np.int64)
    position[order] = np.arange(num_rows, dtype=np.int64)
    hot = (np.arange(num_rows) < capacity) & (counts[order] >= 2)
    return HotPlan(order, position, hot)
