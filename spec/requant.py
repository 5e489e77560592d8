"""Requantization encodings and field widths: the instruction set's codes and the widths the gateware
(:class:`tridsa.hw.requant.RequantUnit`) and the golden model (:mod:`tridsa.sw.requant`) share."""

__all__ = ["ROUNDING", "OUT_FORMATS", "OUT_RANGES", "ACC_BITS", "MULTIPLIER_BITS", "SHIFT_BITS", "SHIFT_MAX",
           "ZERO_POINT_BITS", "INT32_MIN", "INT32_MAX"]

#: Rounding mode encodings of the instruction set.
ROUNDING = {"tflite": 0, "half_up": 1, "half_even": 2}
#: Output format encodings of the instruction set.
OUT_FORMATS = {"int32": 0, "int8": 1, "uint8": 2, "int4": 3}

INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1
#: Inclusive value range of every output format.
OUT_RANGES = {"int32": (INT32_MIN, INT32_MAX), "int8": (-128, 127), "uint8": (0, 255), "int4": (-8, 7)}
#: Accumulator and bias width.
ACC_BITS = 32
#: Multiplier width: ``m`` is unsigned, in ``[0, 2**31)``.
MULTIPLIER_BITS = 31
#: Largest shift; the shift field is :data:`SHIFT_BITS` wide.
SHIFT_MAX = 62
SHIFT_BITS = SHIFT_MAX.bit_length()
#: Width of the signed zero point field.
ZERO_POINT_BITS = 16
