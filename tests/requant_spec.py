"""An independent scalar reference of the requantization output stage, written from the specifications
(TFLite/gemmlowp ``MultiplyByQuantizedMultiplier`` as its C++ reads; single rounding half up; ONNX
QLinear* round half to even) with Python integers and fractions. Tests compare the golden model
(``tridsa.sw.requant``) and everything built on it against this, never against the golden code itself.
"""
import math
from fractions import Fraction

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1
#: Output ranges of the formats, from their definitions.
OUT_RANGES = {"int8": (-128, 127), "uint8": (0, 255), "int4": (-8, 7), "int32": (INT32_MIN, INT32_MAX)}


def _sat32(value: int) -> int:
    return max(INT32_MIN, min(INT32_MAX, value))


def _wrap32(value: int) -> int:
    return (value + (1 << 31)) % (1 << 32) - (1 << 31)


def _c_div(a: int, b: int) -> int:
    """C integer division: truncate toward zero."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def _tflite_multiply(x: int, quantized_multiplier: int, shift: int) -> int:
    """TFLite MultiplyByQuantizedMultiplier (gemmlowp reference), written as the C++ reads."""
    left_shift = shift if shift > 0 else 0
    right_shift = 0 if shift > 0 else -shift
    a, b = _wrap32(x * (1 << left_shift)), quantized_multiplier
    if a == b == INT32_MIN:
        high = INT32_MAX
    else:
        ab = a * b
        nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
        high = _c_div(ab + nudge, 1 << 31)
    mask = (1 << right_shift) - 1
    remainder = high & mask
    threshold = (mask >> 1) + (1 if high < 0 else 0)
    return (high >> right_shift) + (1 if remainder > threshold else 0)


def ref_requant(x, b, m, s, rounding, zp, fmt, relu, enable=True) -> int:
    v = _wrap32(x + b)
    if not enable:
        r, zp = v, 0
    elif rounding == "half_up":
        r = math.floor(Fraction(v * m, 1 << s) + Fraction(1, 2))
    elif rounding == "half_even":
        r = round(Fraction(v * m, 1 << s) + zp) - zp  # Fraction rounds half to even
    else:
        r = _tflite_multiply(v, m, 31 - s)
    y = _sat32(_sat32(r) + zp)
    lo, hi = OUT_RANGES[fmt]
    if relu:
        lo = max(lo, zp)
    return min(max(y, lo), hi)
