"""``tridsa bench gather``: the gather engine on synthetic DLRM traffic.

:func:`run` measures

* **hit rate vs Belady**: the row cache (golden model, which the RTL matches counter for counter) with
  plain LRU and with the driver's hot-row hints (:mod:`tridsa.sw.cache_hints`; profiled on the call's
  own indices, as the driver does, and on the previous batch of the same distribution, as an online
  hot-embedding cache would) against the optimal MIN policy of the same capacity (without and with
  bypass), at a cache of 5 % of the table's rows, for Zipf alpha 0.9 / 1.0 / 1.3 and uniform indices;
* **bandwidth on misses**: for rows of 16..128 bytes, uniform indices over a table much larger than the
  cache, two figures against the port's peak (``mem_width`` bytes per cycle): every byte the port
  moved (rows, indices and offsets of both passes, int32 output) and the row bytes alone;
* **latency tolerance**: cycles of the same workload at memory latencies 1..32, with prefetch
  (``Config.prefetch_depth`` rows in flight) and without (one row in flight); pooling factors 1..100.

Each latency / prefetch point is its own Config, hence its own simulator build on HDL backends; the
``amaranth`` backend needs no build. Prints Markdown tables, writes PNG plots to ``out_dir`` and
returns every number in a dict.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from tridsa import Accelerator, Config
from tridsa.sw.cache_hints import hot_plan
from tridsa.spec.config import ceil_div
from tridsa.sw.dlrm_traffic import make_bags
from tridsa.sw.row_cache import belady_hits, simulate

from .report import write_section

__all__ = ["run", "hit_rates", "hit_rate_table", "port_table", "bandwidth", "latency_sweep", "latency_loss", "latency_table"]

DISTS = (("zipf", 0.9), ("zipf", 1.0), ("zipf", 1.3), ("uniform", None))


def _bags(rows, batch, pooling, dist, alpha, seed, permute=True):
    return make_bags(batch, pooling, rows, dist=dist, alpha=alpha or 1.0, rng=seed, permute=permute)


def hit_rates(config: Config, lookups: int = 20_000, seed: int = 0, backend: str | None = None) -> list:
    """Hit rates of the configured cache (LRU; hinted LRU) vs Belady's at cache = 5 % of the table's rows.

    ``hinted`` profiles the measured batch itself (what ``embedding_bag`` does); ``hinted_prev``
    profiles an independent previous batch of the same distribution (same hot rows) and applies
    its plan to the measured one: no knowledge of the measured indices at all. These come from the
    NumPy cache model (:func:`tridsa.sw.row_cache.simulate`). With a gateware ``backend`` the same
    three policies also run as one GATHER of the same trace, and ``rtl_*`` are its hit counters (None
    where the call does not fit one GATHER: the cache is flushed per GATHER).
    """
    acc = Accelerator(backend, config) if backend not in (None, "golden") else None
    capacity = config.cache_sets * config.cache_ways
    rows = 20 * capacity
    out = []
    for dist, alpha in DISTS:
        perm = np.random.default_rng(seed).permutation(rows)
        idx, off = _bags(rows, lookups // 20, 20, dist, alpha, seed, perm)
        prev, _ = _bags(rows, lookups // 20, 20, dist, alpha, seed + 1, perm)

        def hinted(profile):
            positions, allocate = hot_plan(profile, rows, capacity).lookups(idx)
            return simulate(positions, config.cache_sets, config.cache_ways, allocate)["hits"] / idx.size
        lru = simulate(idx, config.cache_sets, config.cache_ways)["hits"] / idx.size
        opt = belady_hits(idx, capacity) / idx.size
        out.append(dict(dist=dist if alpha is None else f"zipf {alpha}", rows=rows, capacity=capacity,
                        lru=lru, hinted=hinted(idx), hinted_prev=hinted(prev), belady=opt,
                        belady_bypass=belady_hits(idx, capacity, bypass=True) / idx.size))
        for key in ("lru", "hinted", "hinted_prev"):
            out[-1][f"{key}/belady"] = out[-1][key] / opt if opt else 1.0
        if acc is not None:
            plans = {"lru": False, "hinted": True, "hinted_prev": hot_plan(prev, rows, capacity)}
            out[-1].update({f"rtl_{key}": _rtl_hit_rate(acc, rows, idx, off, plan) for key, plan in plans.items()})
    return out


def _rtl_hit_rate(acc, rows, idx, off, cache_hints):
    """Hit rate from the gather engine's counters for one embedding_bag of the trace (None if it took
    more than one GATHER)."""
    table = np.zeros((rows, acc.config.mem_width), np.int8)          # one memory word per row
    acc.embedding_bag(table, idx, off, cache_hints=cache_hints)
    run = acc.last_run
    if run.programs != 1 or run.instructions != 1:                   # one GATHER (HALT not counted)
        return None
    return run.counters["gather_hits"] / run.counters["gather_lookups"]


def hit_rate_table(hits, backend: str | None) -> str:
    """The published hit-rate table: the cache model's three policies, Belady, and the RTL's counters."""
    rtl = backend not in (None, "golden") and any(h.get("rtl_lru") is not None for h in hits)
    lines = ["Measured by `tridsa bench gather --publish`: LRU, hinted and Belady from the NumPy cache model "
             "(`sw/row_cache.py`)" + (f"; RTL columns: the gather engine's hit counters on the {backend} backend, "
                                       "one GATHER of the same trace." if rtl else "."), "",
             "| indices | LRU | hinted (same call) | hinted (previous batch) | Belady (MIN) | hinted / Belady "
             "| previous batch / Belady |" + (" RTL LRU | RTL hinted | RTL previous batch |" if rtl else ""),
             "|---|---|---|---|---|---|---|" + ("---|---|---|" if rtl else "")]
    fmt = lambda v: "-" if v is None else f"{v:.3f}"
    for h in hits:
        cells = [h["dist"], *(fmt(h[k]) for k in ("lru", "hinted", "hinted_prev", "belady")),
                 f"{h['hinted/belady']:.2f}", f"{h['hinted_prev/belady']:.2f}"]
        if rtl:
            cells += [fmt(h.get(f"rtl_{k}")) for k in ("lru", "hinted", "hinted_prev")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _measure(acc, rows, row_bytes, batch, pooling, dist="uniform", alpha=None, seed=0, cache_hints=True):
    """One embedding_bag on ``acc``; returns cycles and counters."""
    dim = row_bytes                                              # int8 rows: one byte per element
    table = np.random.default_rng(seed).integers(-128, 128, (rows, dim)).astype(np.int8)
    idx, off = _bags(rows, batch, pooling, dist, alpha, seed)
    start = time.perf_counter()
    acc.embedding_bag(table, idx, off, cache_hints=cache_hints)
    stats = acc.last_run
    return dict(cycles=stats.cycles, wall=time.perf_counter() - start, lookups=stats.gather_lookups,
                misses=stats.gather_misses, bytes_read=stats.gather_bytes_read,
                busy=stats.counters.get("gather_busy"), port_words=stats.gather_mem_reads + stats.gather_mem_writes,
                cycles_per_s=stats.cycles / max(time.perf_counter() - start, 1e-9))


def _table_rows(config, row_bytes, rows_wanted):
    """Rows that fit the memory beside indices and output (the table dominates)."""
    row_words = ceil_div(row_bytes, config.mem_width)
    return max(8, min(rows_wanted, config.mem_depth // (2 * row_words)))


def bandwidth(config: Config, backend: str, row_sizes=(16, 32, 64, 128), batch=8, pooling=32) -> list:
    """Port bytes and row bytes per busy cycle on (mostly) misses vs the port's peak of ``mem_width`` bytes
    per cycle; ``row_share`` is the rows' part of the port's words."""
    acc = Accelerator(backend, config)
    out = []
    for row_bytes in row_sizes:
        if row_bytes > max(config.cache_row_bytes, config.mem_width):
            continue
        rows = _table_rows(config, row_bytes, 64 * config.cache_sets * config.cache_ways)
        r = _measure(acc, rows, row_bytes, batch, pooling)
        port_bytes = r["port_words"] * config.mem_width
        r.update(row_bytes=row_bytes, port_bytes_per_cycle=port_bytes / r["busy"],
                 port_of_peak=port_bytes / r["busy"] / config.mem_width,
                 row_bytes_per_cycle=r["bytes_read"] / r["busy"],
                 row_of_peak=r["bytes_read"] / r["busy"] / config.mem_width,
                 row_share=r["bytes_read"] / port_bytes)
        out.append(r)
    return out


def latency_sweep(config: Config, backend: str, latencies=(1, 32), poolings=(1, 10, 100),
                  row_bytes=64, lookups=400, prefetches=None) -> list:
    """Busy cycles of the same workload (Zipf 1.0, hinted cache) vs memory latency, with and without prefetch.

    ``prefetches``: the ``prefetch_depth`` values to sweep; default ``(config.prefetch_depth, 16, 8, 1)``
    (1: no prefetch). Every point is its own Config (a simulator build on HDL backends)."""
    out = []
    for latency in latencies:
        for prefetch in prefetches or sorted({config.prefetch_depth, 16, 8, 1}, reverse=True):
            cfg = config.replace(mem_latency=latency, prefetch_depth=prefetch)
            acc = Accelerator(backend, cfg)
            rows = _table_rows(cfg, row_bytes, 20 * cfg.cache_sets * cfg.cache_ways)    # cache = 5 % of rows
            for pooling in poolings:
                batch = max(1, lookups // pooling)
                r = _measure(acc, rows, row_bytes, batch, pooling, "zipf", 1.0)
                r.update(latency=latency, prefetch=prefetch, pooling=pooling,
                         lookups_per_kcycle=1000 * r["lookups"] / r["busy"])
                out.append(r)
    return out


def latency_loss(sweep: list) -> list:
    """Throughput lost from the lowest to the highest latency of a sweep, per prefetch depth and pooling."""
    out = []
    for prefetch in sorted({s["prefetch"] for s in sweep}, reverse=True):
        for pooling in sorted({s["pooling"] for s in sweep}):
            pts = sorted((s for s in sweep if s["prefetch"] == prefetch and s["pooling"] == pooling),
                         key=lambda s: s["latency"])
            lo, hi = pts[0], pts[-1]
            out.append(dict(prefetch=prefetch, pooling=pooling, latencies=f"{lo['latency']} -> {hi['latency']}",
                            loss=1 - hi["lookups_per_kcycle"] / lo["lookups_per_kcycle"]))
    return out


def port_table(bw, config, backend: str) -> str:
    """The published memory-port table of :func:`bandwidth`."""
    source = "the cycle model" if backend == "golden" else f"RTL counters on the {backend} backend"
    lines = [f"Measured by `tridsa bench gather --publish` ({source}; {config.mem_width} B/cycle port peak):", "",
             "| row bytes | port bytes / peak | row bytes / peak | row share of port traffic |", "|---|---|---|---|"]
    lines += [f"| {b['row_bytes']} | {b['port_of_peak']:.2f} | {b['row_of_peak']:.2f} | {b['row_share']:.2f} |" for b in bw]
    return "\n".join(lines)


def latency_table(loss, config, backend: str) -> str:
    """The published latency-tolerance table of :func:`latency_loss`."""
    source = "the cycle model" if backend == "golden" else f"RTL busy counters on the {backend} backend"
    lines = [f"Measured by `tridsa bench gather --publish` ({source}; Zipf 1.0, 64-byte rows, hinted cache, "
             f"400 lookups per GATHER; prefetch {config.prefetch_depth} is the default Config's):", "",
             "| prefetch depth | pooling | memory latency | throughput lost |", "|---|---|---|---|"]
    lines += [f"| {r['prefetch']} | {r['pooling']} | {r['latencies']} | {r['loss']:.3f} |" for r in loss]
    return "\n".join(lines)


def _markdown(rows: list, cols: list) -> str:
    head = "| " + " | ".join(cols) + " |\n|" + "---|" * len(cols) + "\n"
    fmt = lambda v: f"{v:.3f}" if isinstance(v, float) else str(v)
    return head + "".join("| " + " | ".join(fmt(r[c]) for c in cols) + " |\n" for r in rows)


def _plots(out_dir: Path, hits, bw, sweep, config) -> list:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    files = []
    fig, ax = plt.subplots(figsize=(5, 3.2))
    x = np.arange(len(hits))
    for k, (key, label) in enumerate((("lru", "LRU"), ("hinted", "hinted LRU (tridsa default)"),
                                      ("hinted_prev", "hinted, previous-batch profile"), ("belady", "Belady (MIN)"))):
        ax.bar(x + 0.2 * (k - 1.5), [h[key] for h in hits], 0.2, label=label)
    ax.set_xticks(x, [h["dist"] for h in hits])
    ax.set_ylabel("hit rate")
    ax.set_title("row cache = 5% of rows")
    ax.legend(fontsize=7)
    fig.tight_layout()
    files.append(out_dir / "gather_hit_rate.png")
    fig.savefig(files[-1], dpi=120)
    plt.close(fig)
    if bw:
        fig, ax = plt.subplots(figsize=(5, 3.2))
        ax.plot([b["row_bytes"] for b in bw], [b["port_bytes_per_cycle"] for b in bw], "s-", label="port bytes / cycle")
        ax.plot([b["row_bytes"] for b in bw], [b["row_bytes_per_cycle"] for b in bw], "o-", label="row bytes / cycle")
        ax.axhline(config.mem_width, color="k", ls="--", label="port peak")
        ax.set_xlabel("row bytes")
        ax.set_ylabel("bytes / cycle")
        ax.legend()
        fig.tight_layout()
        files.append(out_dir / "gather_bandwidth.png")
        fig.savefig(files[-1], dpi=120)
        plt.close(fig)
    if sweep:
        fig, ax = plt.subplots(figsize=(5, 3.2))
        for prefetch in sorted({s["prefetch"] for s in sweep}, reverse=True):
            for pooling in sorted({s["pooling"] for s in sweep}):
                pts = [s for s in sweep if s["prefetch"] == prefetch and s["pooling"] == pooling]
                ax.plot([p["latency"] for p in pts], [p["lookups_per_kcycle"] for p in pts], "o-" if prefetch > 1 else "x--",
                        label=f"prefetch {prefetch}, pooling {pooling}")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("memory latency (cycles)")
        ax.set_ylabel("lookups / 1000 cycles")
        ax.legend(fontsize=7)
        fig.tight_layout()
        files.append(out_dir / "gather_latency.png")
        fig.savefig(files[-1], dpi=120)
        plt.close(fig)
    return files


def run(config: Config, backend: str = "amaranth", out_dir=".", sweep=True, quick=False, publish=False) -> dict:
    """Run the gather benchmark; print Markdown tables, write PNGs to ``out_dir``, return the numbers.

    The HDL parts use a table that fits ``mem_depth``; ``quick`` skips the latency sweep. ``publish`` writes
    :func:`hit_rate_table`, :func:`port_table` and :func:`latency_table` into README.md (sections
    ``bench-gather-hits``, ``-port``, ``-latency``)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    hits = hit_rates(config, backend=backend)
    print("## Row cache hit rate vs Belady (cache = 5% of rows)\n")
    print(hit_rate_table(hits, backend) + "\n")
    if publish:
        print(f"published: {', '.join(map(str, write_section('bench-gather-hits', hit_rate_table(hits, backend))))}")
    bw = bandwidth(config, backend)
    print(f"## Bandwidth on misses ({backend}, port peak {config.mem_width} B/cycle)\n")
    print(_markdown(bw, ["row_bytes", "lookups", "misses", "busy", "port_bytes_per_cycle", "port_of_peak",
                         "row_bytes_per_cycle", "row_of_peak", "row_share"]))
    if publish:
        print(f"published: {', '.join(map(str, write_section('bench-gather-port', port_table(bw, config, backend))))}")
    # pooling 1 writes one output row per lookup: give the sweep room for a 20 x cache table and them
    lat = latency_sweep(config.replace(mem_depth=max(config.mem_depth, 8192)), backend) if sweep and not quick else []
    if lat:
        print("## Latency tolerance (Zipf 1.0, 64-byte rows, hinted cache)\n")
        print(_markdown(lat, ["latency", "prefetch", "pooling", "lookups", "misses", "busy", "lookups_per_kcycle"]))
        print(_markdown(latency_loss(lat), ["prefetch", "pooling", "latencies", "loss"]))
        if publish:
            table = latency_table(latency_loss(lat), config, backend)
            print(f"published: {', '.join(map(str, write_section('bench-gather-latency', table)))}")
    files = _plots(out_dir, hits, bw, lat, config)
    return {"hit_rate": hits, "bandwidth": bw, "latency": lat, "plots": [str(f) for f in files]}


if __name__ == "__main__":
    import sys
    run(Config(), sys.argv[1] if len(sys.argv) > 1 else "amaranth", "bench_out")
