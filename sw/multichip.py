"""DLRM on several accelerators: embedding tables sharded model-parallel, MLPs data-parallel, an all-to-all
of the pooled embeddings in between (the TorchRec / DLRM layout), each chip an :class:`Accelerator` of any
backend held by one Ray actor.

One step of :func:`run_sharded` on ``N`` chips with a global batch of ``B`` samples:

1. **bottom MLP, data-parallel**: chip ``c`` runs ``model.bottom`` on its slice of the batch
   (``np.array_split`` of the samples);
2. **embeddings, model-parallel**: chip ``c`` holds the shards :func:`tridsa.sw.sharding.plan` gave it
   and pools, in one table-batched gather, every sample's bag restricted to its rows (a row-wise shard
   gives a partial sum);
3. **all-to-all**: chip ``s`` sends to chip ``d`` the pooled rows of ``d``'s samples for each table it
   holds rows of (int32; ``B_d x dim x 4`` bytes per table), and ``d`` adds the partial sums of a table
   (int32 wrap-around, as the single-chip sum);
4. **interaction and top MLP, data-parallel** on each chip's slice.

Steps 1-2 and 4 run on all actors at once. The result equals ``model.forward`` on one chip bit for bit:
the MLPs and the interaction are row-wise and the pooled sums are associative mod 2**32.
Reported per chip: cycles (gather and MLP; the cycle model's on the golden backend), MACs,
lookups, bytes read by the gather engine, embedding bytes held, all-to-all bytes sent and received;
and the all-to-all matrices of pooled embeddings and of the input distribution (the indices and
offsets each chip needs from the owners of the samples, 4 bytes each).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from .cluster import connect
from ..spec.config import Config
from .metered import KEYS, Metered
from .sharding import Plan, plan, row_lookups

__all__ = ["Chip", "MultiChipResult", "local_bags", "dlrm_plan", "run_sharded", "run_single", "traffic"]

def _total(*values):
    """The sum of cycle counts, None if one is unknown (a backend without a cycle counter)."""
    return None if None in values else sum(values)


class Chip:
    """One accelerator (``Accelerator(backend, config)``) with its embedding shards and the model's MLPs.

    Every stage returns ``(output, counters)``, the counters summed over the stage's driver calls.
    """

    def __init__(self, backend: str, config: Config, model, tables):
        from .driver import Accelerator
        self.acc = Accelerator(backend, config)
        self.model, self.tables = model, list(tables)

    def bottom(self, dense):
        meter = Metered(self.acc)
        return self.model.bottom(meter, dense), meter.totals

    def embed(self, indices_list, offsets_list):
        from .gather_ops import TableBatch
        meter = Metered(self.acc)
        return TableBatch(self.tables)(meter, indices_list, offsets_list, "sum"), meter.totals

    def top(self, b, emb):
        meter = Metered(self.acc)
        return self.model.top(meter, b, emb), meter.totals


def local_bags(indices, offsets, start: int, end: int):
    """Every bag of ``(indices, offsets)`` restricted to rows ``start .. end-1``, renumbered from 0.

    Same number of bags (empty ones pool to zero); ``offsets`` as ``embedding_bag`` takes them.
    """
    indices, offsets = np.asarray(indices, np.int64), np.asarray(offsets, np.int64)
    lengths = np.diff(np.append(offsets, len(indices)))
    bag = np.repeat(np.arange(len(offsets)), lengths)
    keep = (indices >= start) & (indices < end)
    kept = np.bincount(bag[keep], minlength=len(offsets))
    return indices[keep] - start, np.concatenate([[0], np.cumsum(kept)[:-1]]).astype(np.int64)


@dataclasses.dataclass
class MultiChipResult:
    """One sharded step: logits, pooled embeddings, the plan, per-chip figures and all-to-all volumes (bytes,
    ``[source][destination]``)."""
    logits: np.ndarray
    pooled: np.ndarray
    plan: Plan
    chips: list
    all_to_all: np.ndarray
    input_dist: np.ndarray

    @property
    def all_to_all_bytes(self) -> int:
        return int(self.all_to_all.sum())


def _slices(batch: int, chips: int) -> list:
    if batch < chips:
        raise ValueError(f"batch of {batch} samples on {chips} chips: every chip needs at least one sample "
                         "(data-parallel MLPs)")
    return [np.asarray(s) for s in np.array_split(np.arange(batch), chips)]


def _take_bags(indices, offsets, samples):
    """The bags of ``samples`` (a contiguous range) of ``(indices, offsets)``."""
    ends = np.append(offsets[1:], len(indices))
    lo, hi = offsets[samples[0]], ends[samples[-1]]
    return indices[lo:hi], offsets[samples] - lo


def traffic(layout: Plan, sparse, batch: int, dim: int) -> dict:
    """What one step of ``layout`` moves, without running it: per chip its ``samples`` and ``lookups``
    (indices of its shards over the whole batch), and the ``[source][destination]`` byte matrices
    ``all_to_all`` (pooled int32 rows; pieces of one table on one chip are summed before sending) and
    ``input_dist`` (the indices and one offset per bag that each shard's chip needs from a sample's owner)."""
    chips = layout.chips
    slices = _slices(batch, chips)
    sparse = [(np.asarray(i, np.int64), np.asarray(o, np.int64)) for i, o in sparse]
    a2a, input_dist = np.zeros((chips, chips), np.int64), np.zeros((chips, chips), np.int64)
    lookups = [0] * chips
    for c in range(chips):
        held = layout.on_chip(c)
        for shard in held:
            idx_all, off_all = local_bags(*sparse[shard.table], shard.start, shard.end)
            lookups[c] += len(idx_all)
            for d, samples in enumerate(slices):
                if d != c:
                    idx, _ = _take_bags(idx_all, off_all, samples)
                    input_dist[d, c] += 4 * (len(idx) + len(samples))
        for d, samples in enumerate(slices):
            if d != c:
                a2a[c, d] += len({s.table for s in held}) * len(samples) * dim * 4
    return dict(samples=[len(s) for s in slices], lookups=lookups, all_to_all=a2a, input_dist=input_dist)


def dlrm_plan(model, sparse, chips: int, strategy: str = "auto", profile=None) -> Plan:
    """:func:`tridsa.sw.sharding.plan` of ``model``'s tables, balancing the row counts of ``profile`` (index
    arrays, one per table; default the indices of ``sparse``)."""
    tables = model.embedding_tables()
    rows = [len(t) for t in tables]
    counts = row_lookups(profile if profile is not None else [np.asarray(i) for i, _ in sparse], rows)
    return plan(rows, [t.shape[1] * t.dtype.itemsize for t in tables], counts, chips, strategy)


def run_sharded(model, dense, sparse, chips: int, backend: str = "golden", config: Config | None = None,
                strategy: str = "auto", profile=None, address: str | None = None,
                num_cpus: int | None = None) -> MultiChipResult:
    """One DLRM step on ``chips`` accelerators (Ray actors); see the module docstring.

    ``model`` is a :class:`tridsa.sw.workloads.dlrm.DLRM`; ``dense`` (B, 4) int8 and ``sparse`` one
    ``(indices, offsets)`` pair per table, as ``model.forward`` takes them. ``profile``: index arrays
    (one per table) whose row counts the planner balances; default this batch's own indices.
    ``address``/``num_cpus``: :func:`tridsa.sw.cluster.connect`.
    """
    config = config or Config()
    ray = connect(address, num_cpus)
    tables = model.embedding_tables()
    dense = np.asarray(dense)
    sparse = [(np.asarray(i, np.int64), np.asarray(o, np.int64)) for i, o in sparse]
    slices = _slices(len(dense), chips)
    dim = tables[0].shape[1]
    layout = dlrm_plan(model, sparse, chips, strategy, profile)
    cpus = ray.cluster_resources().get("CPU", 1)
    actor = ray.remote(num_cpus=min(1.0, cpus / chips))(Chip)
    shards = [layout.on_chip(c) for c in range(chips)]
    actors = [actor.remote(backend, config, model, [tables[s.table][s.start:s.end] for s in shards[c]])
              for c in range(chips)]
    try:
        bottoms = [a.bottom.remote(dense[s]) for a, s in zip(actors, slices)]
        bags = [[local_bags(*sparse[s.table], s.start, s.end) for s in shards[c]] for c in range(chips)]
        embeds = [actors[c].embed.remote([i for i, _ in bags[c]], [o for _, o in bags[c]]) if shards[c] else None
                  for c in range(chips)]
        bottoms = ray.get(bottoms)
        embeds = [ray.get(e) if e is not None else (None, dict.fromkeys(KEYS, 0)) for e in embeds]
        pooled = np.zeros((len(dense), len(tables), dim), np.int64)
        for c in range(chips):
            for k, shard in enumerate(shards[c]):
                pooled[:, shard.table] += embeds[c][0][:, k]
        pooled = pooled.astype(np.int32)         # the int32 wrap-around of the single-chip sum
        tops = ray.get([a.top.remote(bottoms[c][0], pooled[slices[c]]) for c, a in enumerate(actors)])
    finally:
        for a in actors:
            ray.kill(a)
    moved = traffic(layout, sparse, len(dense), dim)
    a2a = moved["all_to_all"]
    held = layout.chip_bytes()
    figures = []
    for c in range(chips):
        gather, mlp = embeds[c][1], [bottoms[c][1], tops[c][1]]
        gather_cycles = gather["cycles"] if shards[c] else 0
        mlp_cycles = _total(*(m["cycles"] for m in mlp))
        figures.append(dict(
            chip=c, samples=len(slices[c]), shards=len(shards[c]), embedding_bytes=held[c],
            planned_load=layout.load[c], gather_cycles=gather_cycles, mlp_cycles=mlp_cycles,
            cycles=_total(gather_cycles, mlp_cycles), macs=sum(m["macs"] for m in mlp),
            lookups=gather["gather_lookups"], gather_bytes_read=gather["gather_bytes_read"],
            all_to_all_sent=int(a2a[c].sum()), all_to_all_received=int(a2a[:, c].sum())))
    logits = np.concatenate([t[0] for t in tops])
    return MultiChipResult(logits, pooled, layout, figures, a2a, moved["input_dist"])


def run_single(model, dense, sparse, backend: str = "golden", config: Config | None = None):
    """The reference on one accelerator: ``(logits, pooled embeddings, figures)``, figures with ``cycles``,
    ``gather_cycles``, ``mlp_cycles`` and ``macs``."""
    from .driver import Accelerator
    acc = Accelerator(backend, config or Config())
    gather, mlp = Metered(acc), Metered(acc)
    pooled = model.embeddings(gather, sparse)
    logits = model.top(mlp, model.bottom(mlp, np.asarray(dense)), pooled)
    return logits, pooled, dict(cycles=_total(gather.totals["cycles"], mlp.totals["cycles"]), gather_cycles=gather.totals["cycles"],
                                mlp_cycles=mlp.totals["cycles"], macs=mlp.totals["macs"])
