"""Stimulus and expected results for the MAC array / PE unit tests (shared by Amaranth sim and cocotb).

A schedule is a list of per-cycle inputs ``(valid, first, last, a_bytes, b_bytes)`` with random idle
gaps; two ``last`` k-steps are kept ``min_tile_cycles`` apart as the array's protocol requires.
"""
import numpy as np

MODES = [(0, 1, 1), (0, 0, 1), (0, 1, 0), (1, 1, 1), (1, 0, 0)]   # (int4, a_signed, b_signed)


def decode(bytes_, int4, signed):
    v = np.asarray(bytes_, np.int64)
    if int4:
        lo, hi = v & 0xF, v >> 4
        if signed:
            lo, hi = np.where(lo >= 8, lo - 16, lo), np.where(hi >= 8, hi - 16, hi)
        return lo, hi
    return (np.where(v >= 128, v - 256, v) if signed else v), None


def tile_result(a_rows, b_rows, mode):
    """a_rows (k, R) bytes, b_rows (k, C) bytes -> (R, C) int32 accumulators."""
    int4, a_signed, b_signed = mode
    a_lo, a_hi = decode(a_rows, int4, a_signed)
    b_lo, b_hi = decode(b_rows, int4, b_signed)
    acc = a_lo.T @ b_lo
    if int4:
        acc = acc + a_hi.T @ b_hi
    return ((acc + (1 << 31)) % (1 << 32)) - (1 << 31)


def schedule(rng, rows, cols, min_tile_cycles, tiles, mode, gap_prob=0.3):
    """Random tiles with random gaps -> (per-cycle inputs, expected output rows in order)."""
    cycles, expected = [], []
    since_last = min_tile_cycles
    for _ in range(tiles):
        k = int(rng.integers(1, 12))
        a = rng.integers(0, 256, (k, rows))
        b = rng.integers(0, 256, (k, cols))
        expected.extend(tile_result(a, b, mode))
        for step in range(k):
            while rng.random() < gap_prob or (step == k - 1 and since_last < min_tile_cycles):
                cycles.append((0, 0, 0, [0] * rows, [0] * cols))
                since_last += 1
            cycles.append((1, int(step == 0), int(step == k - 1), list(a[step]), list(b[step])))
            since_last = 1 if step == k - 1 else since_last + 1
    return cycles, expected


def pack(values, bits):
    word = 0
    for i, v in enumerate(values):
        word |= (int(v) & ((1 << bits) - 1)) << (i * bits)
    return word


def unpack_signed(word, count, bits):
    out = []
    for i in range(count):
        v = (word >> (i * bits)) & ((1 << bits) - 1)
        out.append(v - (1 << bits) if v >> (bits - 1) else v)
    return out
