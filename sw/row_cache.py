"""Golden model of the gather engine's on-chip row cache, and the optimal (Belady) bound.

The cache holds whole embedding rows, keyed by row index (one table per cache; the driver flushes
it between tables). It is set-associative with true LRU replacement:

* set index ``row % sets`` and tag ``row // sets``. With a power-of-two ``sets`` (as
  :class:`~tridsa.spec.config.Config` requires) the set is the index's low bits, which costs no
  logic. A hash would only help strided index patterns; DLRM traffic is Zipf-distributed over
  rows in a random order (see :mod:`tridsa.sw.dlrm_traffic`), so hot rows already spread
  evenly over the sets.
* a miss allocates unless its lookup carries the *bypass* hint (``allocate=False``); when the set
  is full the least recently used way is evicted. Hits and fills both make the row the most
  recently used of its set. A bypassed miss reads the row from memory and changes nothing: no
  fill, no eviction, LRU state untouched (a hit is a hit whatever its hint). The driver uses the
  hint to keep the cache for a hot set of rows it profiled (:mod:`tridsa.sw.cache_hints`); all
  lookups allocating is plain LRU.

The model is cycle-free: it says which accesses hit, not when. Counters match the hardware's
performance counters: ``lookups = hits + misses``; ``evictions`` counts allocating misses into
full sets, ``bypasses`` the misses that did not allocate.
"""
from __future__ import annotations

import heapq
from collections import OrderedDict

import numpy as np

__all__ = ["RowCache", "simulate", "simulate_hits", "belady_hits"]


def _positive_int(value, name: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name}={value!r} is invalid: must be a positive integer")
    return int(value)


def _trace(trace) -> np.ndarray:
    arr = np.asarray(trace)
    if arr.size == 0 and arr.dtype == np.float64:
        arr = arr.astype(np.int64)
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"trace must be an integer array of row indices, got dtype {arr.dtype}")
    if arr.ndim != 1:
        raise ValueError(f"trace must be 1-D, got shape {arr.shape}")
    if arr.size and arr.min() < 0:
        pos = int(np.argmax(arr < 0))
        raise ValueError(f"trace[{pos}]={arr[pos]} is invalid: row indices must be >= 0")
    return arr.astype(np.int64)


class RowCache:
    """Set-associative row cache with true LRU replacement.

    Parameters
    ----------
    sets : int
        Number of sets (>= 1). A row lives in set ``row % sets`` with tag ``row // sets``.
    ways : int
        Rows per set (>= 1).

    Attributes
    ----------
    lookups, hits, misses, evictions, bypasses : int
        Performance counters since construction or :meth:`reset_counters`.
    """

    def __init__(self, sets: int, ways: int):
        self.sets = _positive_int(sets, "sets")
        self.ways = _positive_int(ways, "ways")
        # per set: tag -> None, ordered from least to most recently used
        self._lru = [OrderedDict() for _ in range(self.sets)]
        self.reset_counters()

    @classmethod
    def from_config(cls, config) -> "RowCache":
        """The cache of a :class:`~tridsa.spec.config.Config` (``cache_sets`` x ``cache_ways``)."""
        return cls(config.cache_sets, config.cache_ways)

    @property
    def capacity(self) -> int:
        """Rows the cache holds: ``sets * ways``."""
        return self.sets * self.ways

    def reset_counters(self) -> None:
        """Zero the counters; the contents stay."""
        self.lookups = self.hits = self.misses = self.evictions = self.bypasses = 0

    def flush(self) -> None:
        """Invalidate every row (counters stay)."""
        for lru in self._lru:
            lru.clear()

    def locate(self, row: int) -> tuple[int, int]:
        """``(set, tag)`` of a row index."""
        if isinstance(row, (bool, np.bool_)) or not isinstance(row, (int, np.integer)) or row < 0:
            raise ValueError(f"row={row!r} is invalid: must be an integer >= 0")
        return int(row) % self.sets, int(row) // self.sets

    def __contains__(self, row) -> bool:
        """Whether ``row`` is resident, without touching LRU state or counters."""
        s, tag = self.locate(row)
        return tag in self._lru[s]

    def access(self, row: int, allocate: bool = True) -> bool:
        """Look up ``row``; on a miss fill it, evicting the set's LRU row if the set is full.

        With ``allocate=False`` (the bypass hint) a miss leaves the cache as it was.

        Returns
        -------
        bool
            True on a hit.
        """
        s, tag = self.locate(row)
        lru = self._lru[s]
        self.lookups += 1
        if tag in lru:
            lru.move_to_end(tag)
            self.hits += 1
            return True
        self.misses += 1
        if not allocate:
            self.bypasses += 1
            return False
        if len(lru) == self.ways:
            lru.popitem(last=False)
            self.evictions += 1
        lru[tag] = None
        return False

    def resident_rows(self) -> list[int]:
        """Resident rows, set by set, each set from least to most recently used."""
        return [tag * self.sets + s for s, lru in enumerate(self._lru) for tag in lru]

    def counters(self) -> dict:
        """``{"lookups", "hits", "misses", "evictions", "bypasses"}`` as ints."""
        return {"lookups": self.lookups, "hits": self.hits, "misses": self.misses, "evictions": self.evictions,
                "bypasses": self.bypasses}

    @property
    def hit_rate(self) -> float:
        """``hits / lookups`` (0.0 before the first lookup)."""
        return self.hits / self.lookups if self.lookups else 0.0


def simulate(trace, sets: int, ways: int, allocate=None) -> dict:
    """Run a row-index trace through a cold :class:`RowCache`; return its :meth:`~RowCache.counters`.

    ``allocate``: None (every miss allocates: plain LRU) or one bool per lookup (False: bypass hint).
    """
    return simulate_hits(trace, sets, ways, allocate)[1]


def simulate_hits(trace, sets: int, ways: int, allocate=None) -> tuple:
    """:func:`simulate`, also returning whether each lookup hit: ``(hits bool array, counters)``."""
    rows = _trace(trace)
    cache = RowCache(sets, ways)
    if allocate is None:
        flags = [True] * rows.size
    else:
        flags = np.asarray(allocate)
        if flags.dtype != np.bool_ or flags.shape != rows.shape:
            raise ValueError(f"allocate must be None or a bool array of the trace's shape {rows.shape}, "
                             f"got {flags.dtype} {flags.shape}")
        flags = flags.tolist()
    hits = np.array([cache.access(row, alloc) for row, alloc in zip(rows.tolist(), flags)], bool)
    return hits, cache.counters()


def belady_hits(trace, capacity: int, bypass: bool = False) -> int:
    """Hits of the optimal replacement policy (Belady's MIN) on a fully-associative cache.

    On a miss with a full cache MIN evicts the resident row whose next use lies farthest in the
    future (never used again counts as infinitely far). With ``bypass=False`` every miss is
    filled, as in :class:`RowCache`, so the result bounds the hits of any set-associative
    always-allocate cache of ``capacity`` rows from above: ``belady_hits(t, sets * ways) >=
    simulate(t, sets, ways)["hits"]``. With ``bypass=True`` a missing row whose next use is
    farther than every resident row's is not filled (optimal when bypassing is allowed).

    Runs in O(n log n): next-use positions from one backward pass, a max-heap of resident rows
    keyed by next use, stale heap entries skipped lazily.
    """
    rows = _trace(trace).tolist()
    capacity = _positive_int(capacity, "capacity")
    if not isinstance(bypass, (bool, np.bool_)):
        raise TypeError(f"bypass must be True or False, got {bypass!r}")
    n = len(rows)
    never = n  # "no next use" sorts after every real position
    next_use = [never] * n
    last = {}
    for i in range(n - 1, -1, -1):
        next_use[i] = last.get(rows[i], never)
        last[rows[i]] = i
    resident = {}          # row -> its next use position
    heap = []              # (-next use, row); entries whose next use changed are stale
    hits = 0
    for i, row in enumerate(rows):
        nxt = next_use[i]
        if row in resident:
            hits += 1
        elif len(resident) == capacity:
            while -heap[0][0] != resident.get(heap[0][1], -1):
                heapq.heappop(heap)                    # stale entry
            if bypass and nxt >= -heap[0][0]:
                continue                               # the newcomer is needed last: do not fill
            _, victim = heapq.heappop(heap)
            del resident[victim]
        resident[row] = nxt
        heapq.heappush(heap, (-nxt, row))
    return hits
