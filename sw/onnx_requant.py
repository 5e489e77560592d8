"""Output stage of ONNX's quantized ops on the GEMM engine, bit-exact with onnx's reference.

onnx's reference ``QLinearMatMul`` / ``QLinearConv`` compute ``y = clip(rint(C * f + z))`` with the int32
accumulator ``C``, the scale ``f = a_scale * b_scale / y_scale`` evaluated in the scales' own float type
(float32 or float16) and then, because ``int32 * float32`` promotes to float64, one float64 product
``C * f`` and one float64 sum with the zero point ``z``, rounded half to even.

The engine's ``"half_even"`` requant computes ``round_half_even(C * m * 2**-s)`` exactly, with the tie
broken so that the final ``r + z`` is even (:mod:`tridsa.sw.requant`). Writing the float scale exactly as
``f = m * 2**-s`` (every float32/float16 value is such a dyadic number), the two agree bit for bit whenever
the reference's two float64 operations are exact:

* ``C * f`` is exact when ``|C| < 2**(53 - b)``, ``b`` the bit length of ``m``'s odd part (``b <= 24``);
* ``C * f + z`` is exact when ``|C * f| + |z| < 2**(53 - t)``, ``t`` the position of ``f``'s lowest set bit
  below the binary point (always true for ``z = 0``).

:func:`engine_requant` proves both from a bound on ``|C|`` known before the GEMM runs (operand ranges) and
returns the :class:`~tridsa.sw.requant.Requant`; otherwise (a bound too large, a scale outside the
engine's ``m``/``shift`` range, zero or not finite, a zero point or scale that is not per output channel)
it returns ``None``: the GEMM then runs on the engine with int32 output and :func:`host_output_stage`
finishes on the host in exact integer arithmetic that rounds where the reference's float64 rounds (the
product and the sum to 53 significant bits, half to even, then ``rint``): bit-exact in every case.
"""
from __future__ import annotations

import numpy as np

from ..spec.requant import SHIFT_MAX
from .requant import Requant

__all__ = ["engine_requant", "channel_values", "host_output_stage", "OUT_DTYPES"]

#: Output element types the engine's requant produces.
OUT_DTYPES = {np.dtype(np.int8): "int8", np.dtype(np.uint8): "uint8"}


def channel_values(values, shape: tuple, axis: int) -> np.ndarray | None:
    """``values`` broadcast to ``shape``, as one value per index of ``axis`` (1-D), or None if it varies
    along another axis or does not broadcast."""
    try:
        full = np.broadcast_to(np.asarray(values), shape)
    except ValueError:
        return None
    line = np.moveaxis(full, axis, -1).reshape(-1, shape[axis])
    if line.shape[0] and not (line == line[:1]).all():
        return None
    return line[0] if line.shape[0] else None


def _odd_bits(m: int) -> int:
    """Bit length of the odd part of ``m``."""
    return (m >> ((m & -m).bit_length() - 1)).bit_length() if m else 0


def engine_requant(scale: np.ndarray, zero_point: int, bound: np.ndarray) -> Requant | None:
    """The Requant whose result equals the reference's ``rint(C * scale + zero_point)`` for every int32
    ``C`` with ``|C| <= bound`` (per channel), or None when that cannot be proven.

    ``scale``: 1-D float32/float16 values, one per output channel, exactly as the reference computes them;
    ``bound``: 1-D int bounds on ``|C|`` per channel (broadcast against ``scale``).
    """
    scale = np.asarray(scale)
    if scale.dtype not in (np.float16, np.float32) or scale.ndim != 1:
        return None
    if not (np.isfinite(scale).all() and (scale > 0).all()):
        return None
    bound = np.broadcast_to(np.asarray(bound, dtype=object), scale.shape)
    mults, shifts = [], []
    for f, c in zip(scale.astype(np.float64).tolist(), bound.tolist()):
        mantissa, exponent = np.frexp(f)
        m, s = int(np.ldexp(mantissa, 31)), 31 - int(exponent)
        if not 0 <= s <= SHIFT_MAX or int(c) >= 1 << 31:
            return None
        if int(c) >= 1 << (53 - _odd_bits(m)):
            return None
        if zero_point:
            t = s - ((m & -m).bit_length() - 1)
            if t > 0 and m * int(c) + (abs(int(zero_point)) << s) >= 1 << (53 - t + s):
                return None
        mults.append(m)
        shifts.append(s)
    if len(set(zip(mults, shifts))) == 1:
        return Requant(mults[0], shifts[0], int(zero_point), "half_even")
    return Requant(np.array(mults, np.int64), np.array(shifts, np.int64), int(zero_point), "half_even")


def _round_bits(value: int, bits: int = 53) -> int:
    """``value`` rounded (half to even) to ``bits`` significant bits: IEEE binary64 rounding of an integer
    significand (the exponent is kept apart)."""
    excess = abs(value).bit_length() - bits
    if excess <= 0:
        return value
    return _rint_shift(value, excess) << excess


def _rint_shift(value: int, shift: int) -> int:
    """``value * 2**-shift`` rounded half to even (``shift >= 0``)."""
    if shift <= 0:
        return value << -shift
    floor = value >> shift
    rest = value - (floor << shift)
    half = 1 << (shift - 1)
    return floor + (rest > half or (rest == half and floor & 1))


def _exact_output(c: int, f: float, z: int) -> int:
    """``rint(fl64(fl64(c * f) + z))`` in integers, for a finite ``f`` (any float64 value)."""
    if f == 0.0:
        return _rint_shift(z, 0)
    mantissa, exponent = np.frexp(f)
    m, s = int(np.ldexp(mantissa, 53)), 53 - int(exponent)         # f = m * 2**-s exactly
    if s < 0:
        m, s = m << -s, 0
    product = _round_bits(c * m)                                     # fl64(c * f) = product * 2**-s
    total = _round_bits(product + (z << s))                          # fl64(... + z)
    return _rint_shift(total, s)


def host_output_stage(acc: np.ndarray, scale: np.ndarray, zero_point, dtype) -> np.ndarray:
    """The reference's output stage ``clip(rint(acc * scale + zero_point))`` on the exact int32
    accumulator, computed in integers: the float64 product and sum are rounded as IEEE-754 binary64
    does (round to nearest even on 53 significant bits), then rounded half to even and clipped.

    ``scale`` and ``zero_point`` broadcast against ``acc`` as in the reference. A scale that is not finite
    (no integer meaning) is evaluated as the reference does, in float64.
    """
    info = np.iinfo(dtype)
    acc = np.asarray(acc).astype(np.int32)
    scale = np.asarray(scale)
    if not np.isfinite(scale).all():
        value = acc * scale + zero_point
        return np.clip(np.rint(value), info.min, info.max).astype(dtype)
    c, f, z = np.broadcast_arrays(acc, scale.astype(np.float64), np.asarray(zero_point).astype(np.int64))
    flat = [_exact_output(int(ci), float(fi), int(zi)) for ci, fi, zi in zip(c.ravel(), f.ravel(), z.ravel())]
    return np.clip(np.array(flat, dtype=object), info.min, info.max).astype(dtype).reshape(c.shape)
