"""Embedding-table sharding over several accelerators: TorchRec-style table-wise and row-wise shards and a
small planner that balances bytes held and expected lookups.

A :class:`Shard` is a contiguous row range ``[start, end)`` of one table placed on one chip; a table is
either whole on one chip (table-wise) or cut into row ranges on several chips (row-wise, pooled as
partial sums that the owner of each sample adds up: the ``sum`` of the parts equals the ``sum`` over the
whole table, in int32 wrap-around arithmetic too).

:func:`plan` weighs each row by ``row_bytes / total_bytes + lookups / total_lookups`` (the expected
lookups per row come from an index sample: :func:`row_lookups`), so a chip's load is its share of the
memory plus its share of the gather traffic. Strategy ``"table"`` keeps every table whole, ``"row"``
cuts every table into one range of equal row count per chip (TorchRec's row-wise), ``"auto"`` cuts a
table into as many ranges of equal load as its share of the total load asks for (a table holding a quarter of the load on 8 chips gets 2); pieces are placed
heaviest first on the least loaded chip that holds no other piece of the same table (LPT).
"""
from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["Shard", "Plan", "plan", "row_lookups", "STRATEGIES"]

STRATEGIES = ("auto", "table", "row")


@dataclasses.dataclass(frozen=True)
class Shard:
    """Rows ``start .. end-1`` of table ``table`` on chip ``chip``."""
    table: int
    chip: int
    start: int
    end: int

    @property
    def rows(self) -> int:
        return self.end - self.start


@dataclasses.dataclass
class Plan:
    """Where every table's rows live. ``load[c]`` is chip ``c``'s planned load (bytes share + lookups share)."""
    chips: int
    table_rows: tuple
    row_bytes: tuple
    shards: list
    load: list

    def on_chip(self, chip: int) -> list:
        """The shards of ``chip``, in the order its gather call lists them."""
        return [s for s in self.shards if s.chip == chip]

    def chip_bytes(self) -> list:
        """Embedding bytes each chip holds."""
        held = [0] * self.chips
        for s in self.shards:
            held[s.chip] += s.rows * self.row_bytes[s.table]
        return held

    def describe(self) -> list:
        return [dict(table=s.table, chip=s.chip, rows=[s.start, s.end]) for s in self.shards]


def row_lookups(indices_list, table_rows) -> list:
    """Expected lookups of every row of every table: the counts of an index sample (one array per table)."""
    return [np.bincount(np.asarray(idx, np.int64), minlength=rows).astype(np.float64)
            for idx, rows in zip(indices_list, table_rows)]


def _cuts(cost: np.ndarray, pieces: int) -> list:
    """Boundaries of at most ``pieces`` non-empty contiguous ranges of equal summed ``cost``."""
    total = np.concatenate([[0.0], np.cumsum(cost)])
    inner = np.searchsorted(total, total[-1] * np.arange(1, pieces) / pieces, side="left")
    return sorted(set([0, len(cost)] + [int(i) for i in inner if 0 < i < len(cost)]))


def plan(table_rows, row_bytes, lookups, chips: int, strategy: str = "auto") -> Plan:
    """Shard tables of ``table_rows`` rows (``row_bytes`` each) over ``chips`` chips.

    ``lookups``: per table, the expected lookups of each row (:func:`row_lookups`).
    """
    if isinstance(chips, bool) or not isinstance(chips, (int, np.integer)) or chips < 1:
        raise ValueError(f"chips={chips!r} is invalid: must be an integer >= 1")
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy={strategy!r} is invalid: must be one of {STRATEGIES}")
    if not (len(table_rows) == len(row_bytes) == len(lookups)) or not table_rows:
        raise ValueError("table_rows, row_bytes and lookups need one entry per table (at least one table)")
    bytes_total = float(sum(r * b for r, b in zip(table_rows, row_bytes)))
    lookups_total = float(sum(np.sum(l) for l in lookups)) or 1.0
    costs = [np.full(rows, b / bytes_total) + np.asarray(l, np.float64) / lookups_total
             for rows, b, l in zip(table_rows, row_bytes, lookups)]
    pieces = []
    for t, cost in enumerate(costs):
        share = cost.sum()              # of a total of 2 (bytes share + lookups share)
        k = {"table": 1, "row": chips}.get(strategy) or max(1, int(np.ceil(share * chips / 2 - 1e-9)))
        k = min(k, len(cost))
        even = np.cumsum([0] + [len(p) for p in np.array_split(np.arange(len(cost)), k)])
        cuts = _cuts(cost, k) if strategy == "auto" else [int(c) for c in even]
        pieces += [(float(cost[a:b].sum()), t, a, b) for a, b in zip(cuts, cuts[1:])]
    load, shards = [0.0] * chips, []
    for weight, t, a, b in sorted(pieces, key=lambda p: (-p[0], p[1], p[2])):
        holding = {s.chip for s in shards if s.table == t}     # a table's pieces on different chips if possible
        chip = min(range(chips), key=lambda c: (c in holding, load[c], c))
        load[chip] += weight
        shards.append(Shard(t, chip, a, b))
    shards.sort(key=lambda s: (s.chip, s.table, s.start))
    return Plan(chips, tuple(int(r) for r in table_rows), tuple(int(b) for b in row_bytes), shards, load)
