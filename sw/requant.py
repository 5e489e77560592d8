"""Integer requantization: golden model and the :class:`Requant` parameter object.

A requant maps an int32 accumulator to a narrow integer with an integer-only multiply, a rounding
right shift, a zero point and a clamp. It is the output stage of the GEMM engine
(:class:`tridsa.hw.requant.RequantUnit` is bit-exact with :func:`requantize_raw`).

Specification
-------------
Parameters per output channel (the last axis): multiplier ``m`` in ``[0, 2**31)`` and shift ``s``
in ``[0, 62]`` with real scale ``m * 2**-s``; one zero point ``z`` per tensor; a rounding mode.
Input: int32 accumulator ``x``, int32 bias ``b``; ``v = wrap_int32(x + b)``.

* requant disabled (``requant=None``): ``y = v`` (wrapping int32); the output format must be int32.
  ReLU, if asked for, still clamps at 0.
* ``"half_up"``: ``r = floor((v*m + 2**(s-1)) / 2**s)`` for ``s >= 1``, ``r = v*m`` for ``s = 0``
  (a single rounding, half toward +inf).
* ``"half_even"``: ``r = v*m / 2**s`` rounded half to even, where the tie is broken so that the final
  value ``r + z`` is even. This is what ONNX's reference ``QLinearMatMul``/``QLinearConv`` compute:
  ``rint(acc * scale + z)`` in float64 with a float32 ``scale`` (note: the zero point is added
  *before* rounding, so with an odd ``z`` the parity of ``r`` itself is odd at ties). The float64
  computation is exact, so the two agree bit for bit, when ``|acc| < 2**29`` (the product of a 29-bit
  integer and a 24-bit mantissa fits float64's 53 bits) and, if ``z != 0``, ``scale >= 2**-19`` (then
  the float64 sum with ``z`` is exact for every value that the 8-bit clamp does not saturate).
* ``"tflite"``: exactly TFLite's ``MultiplyByQuantizedMultiplier(v, m, 31 - s)`` with gemmlowp's
  integer definitions: ``left = max(31-s, 0)``, ``right = max(s-31, 0)``,
  ``r = RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(wrap_int32(v << left), m), right)``.
  SRDHM: ``nudge = 1<<30 if ab >= 0 else 1-(1<<30)``, ``(ab + nudge) / 2**31`` truncated toward zero,
  ``INT32_MIN*INT32_MIN`` saturates to ``INT32_MAX``. RDBP: ``mask = 2**e - 1``,
  ``threshold = (mask >> 1) + (x < 0)``, ``(x >> e) + ((x & mask) > threshold)``.

Then ``r`` is saturated to int32, ``z`` is added with int32 saturation, and the result is clamped to
the output format: int8 ``[-128, 127]``, uint8 ``[0, 255]``, int4 ``[-8, 7]``, int32
``[INT32_MIN, INT32_MAX]``. ReLU raises the lower clamp bound to ``z`` (TFLite's fused activation).
The clamp is ``min(max(y, lo), hi)``.

The encodings used by the instruction set and the field widths are :mod:`tridsa.spec.requant`.
"""
from __future__ import annotations

import dataclasses
import math
from numbers import Integral

import numpy as np

from ..spec.requant import (INT32_MAX, INT32_MIN, MULTIPLIER_BITS, OUT_FORMATS, OUT_RANGES, ROUNDING, SHIFT_MAX,
                           ZERO_POINT_BITS)

__all__ = [
    "wrap_int32", "round_shift", "requantize_raw", "requantize", "Requant",
]

_OUT_NUMPY = {"int32": np.int32, "int8": np.int8, "uint8": np.uint8, "int4": np.int8}

_ZP_MIN, _ZP_MAX = -(1 << (ZERO_POINT_BITS - 1)), (1 << (ZERO_POINT_BITS - 1)) - 1
_M_MAX = (1 << MULTIPLIER_BITS) - 1


# -- helpers -------------------------------------------------------------------------------------
def _code(value, table: dict, name: str) -> int:
    """Accept a name from ``table`` or its integer code; return the code."""
    if isinstance(value, str):
        if value in table:
            return table[value]
    elif isinstance(value, Integral) and not isinstance(value, bool) and int(value) in table.values():
        return int(value)
    raise ValueError(f"{name}={value!r} is invalid: must be one of {', '.join(map(repr, table))}")


def _name(code: int, table: dict) -> str:
    return next(k for k, v in table.items() if v == code)


def _int_array(value, name: str, lo: int, hi: int) -> np.ndarray:
    """``value`` as an int64 array after checking it is integer and inside ``[lo, hi]``."""
    arr = np.asarray(value)
    if arr.dtype == object:
        try:
            arr = np.asarray(value, dtype=np.int64)
        except (OverflowError, TypeError, ValueError):
            raise ValueError(f"{name} must hold integers in [{lo}, {hi}]") from None
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{name} must be an integer array (got dtype {arr.dtype})")
    if arr.dtype == np.uint64 and arr.size and int(arr.max()) > hi:
        raise ValueError(f"{name} must be in [{lo}, {hi}] (got max {int(arr.max())})")
    arr = arr.astype(np.int64)
    if arr.size and (int(arr.min()) < lo or int(arr.max()) > hi):
        raise ValueError(f"{name} must be in [{lo}, {hi}] (got range [{int(arr.min())}, {int(arr.max())}])")
    return arr


def wrap_int32(x) -> np.ndarray:
    """Wrap integers (int64) to int32 two's complement; returned as int64."""
    u = np.asarray(x, dtype=np.int64) & 0xFFFFFFFF
    return u - ((u >> 31) << 32)


def _srdhm(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """gemmlowp SaturatingRoundingDoublingHighMul on int32 values held in int64."""
    ab = a * b
    nudge = np.where(ab >= 0, np.int64(1 << 30), np.int64(1 - (1 << 30)))
    q = ab + nudge
    high = np.where(q >= 0, q >> 31, -((-q) >> 31))  # C division: truncate toward zero
    overflow = (a == INT32_MIN) & (b == INT32_MIN)
    return np.where(overflow, np.int64(INT32_MAX), high)


def _rdbp(x: np.ndarray, e: np.ndarray) -> np.ndarray:
    """gemmlowp RoundingDivideByPOT (``e`` in [0, 31])."""
    mask = (np.int64(1) << e) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> e) + (remainder > threshold)


# -- golden functions ------------------------------------------------------------------------------
def round_shift(v, m, s, rounding, zero_point: int = 0) -> np.ndarray:
    """The rounding step: ``v * m * 2**-s`` rounded as ``rounding`` asks (see module docstring).

    ``v`` (int32 values), ``m`` and ``s`` broadcast against each other, so per-channel 1-D ``m``/``s``
    apply along the last axis of ``v``. ``zero_point`` only decides ``"half_even"`` ties (the final
    ``r + zero_point`` is even); it is not added. Returns the exact, unsaturated result as int64
    (``|r| < 2**62``).
    """
    code = _code(rounding, ROUNDING, "rounding")
    v = _int_array(v, "v", INT32_MIN, INT32_MAX)
    m = _int_array(m, "m", 0, _M_MAX)
    s = _int_array(s, "s", 0, SHIFT_MAX)
    v, m, s = np.broadcast_arrays(v, m, s)
    if code == ROUNDING["tflite"]:
        exponent = 31 - s
        left = np.maximum(exponent, 0)
        right = np.maximum(-exponent, 0)
        return _rdbp(_srdhm(wrap_int32(v << left), m), right)
    p = v * m                                   # |p| < 2**62
    half = np.where(s > 0, np.int64(1) << np.maximum(s - 1, 0), np.int64(0))
    if code == ROUNDING["half_up"]:
        return (p + half) >> s                  # p + half < 2**62 + 2**61: no overflow
    floor = p >> s
    remainder = p & ((np.int64(1) << s) - 1)
    odd = ((floor + np.int64(zero_point)) & 1) == 1
    up = (s > 0) & ((remainder > half) | ((remainder == half) & odd))
    return floor + up


def requantize_raw(x, bias, multiplier, shift, *, enable: bool = True, rounding=0, zero_point: int = 0,
                   out_format=0, relu: bool = False) -> np.ndarray:
    """Model of the gateware unit with instruction-encoded fields; returns int64 values.

    ``x``, ``bias`` (int32), ``multiplier``, ``shift`` broadcast together (per-lane values along the
    last axis). ``rounding``/``out_format`` are names or codes of :data:`ROUNDING`/:data:`OUT_FORMATS`.
    With ``enable`` false the unit passes ``v = wrap_int32(x + bias)`` on, ignores ``multiplier``,
    ``shift``, ``rounding`` and ``zero_point`` (taken as 0), and still clamps to ``out_format``
    (meaningful only for int32) and applies ``relu``. No check that ``zero_point`` fits the format.
    """
    fmt = _name(_code(out_format, OUT_FORMATS, "out_format"), OUT_FORMATS)
    if not (isinstance(zero_point, Integral) and _ZP_MIN <= zero_point <= _ZP_MAX):
        raise ValueError(f"zero_point={zero_point!r} is invalid: must be an integer in [{_ZP_MIN}, {_ZP_MAX}]")
    x = _int_array(x, "x", INT32_MIN, INT32_MAX)
    bias = _int_array(0 if bias is None else bias, "bias", INT32_MIN, INT32_MAX)
    v = wrap_int32(x + bias)
    if enable:
        z = int(zero_point)
        r = round_shift(v, multiplier, shift, rounding, z)
    else:
        z = 0
        r = v
    r = np.clip(r, INT32_MIN, INT32_MAX)
    y = np.clip(r + z, INT32_MIN, INT32_MAX)
    lo, hi = OUT_RANGES[fmt]
    if relu:
        lo = max(lo, z)
    return np.minimum(np.maximum(y, lo), hi)


def _out_format(out_dtype, requant) -> str:
    if out_dtype is None:
        return "int32" if requant is None else "int8"
    if not isinstance(out_dtype, str):
        try:
            out_dtype = np.dtype(out_dtype).name
        except TypeError:
            pass
    if out_dtype not in OUT_FORMATS:
        raise ValueError(f"out_dtype={out_dtype!r} is invalid: must be None or one of {', '.join(map(repr, OUT_FORMATS))}")
    return out_dtype


def requantize(acc, bias=None, requant: "Requant | None" = None, relu: bool = False, out_dtype=None) -> np.ndarray:
    """Golden output stage: ``acc + bias`` then requantize, zero point, clamp, optional ReLU.

    Parameters
    ----------
    acc:
        int32 accumulators (any integer dtype with values in int32), channels on the last axis.
    bias:
        ``None`` or int32 values broadcastable to ``acc`` (usually one per channel).
    requant:
        :class:`Requant` (per tensor, or per channel with ``acc.shape[-1]`` channels) or ``None``
        for int32 output of ``wrap_int32(acc + bias)``.
    relu:
        Clamp below at the zero point (at 0 without requant).
    out_dtype:
        ``"int8" | "uint8" | "int4" | "int32"`` (or the numpy dtype); ``None`` means int32 without
        requant and int8 with it. int4 values are returned as ``np.int8`` in ``[-8, 7]``.
    """
    fmt = _out_format(out_dtype, requant)
    acc = _int_array(acc, "acc", INT32_MIN, INT32_MAX)
    if bias is not None:
        bias = _int_array(bias, "bias", INT32_MIN, INT32_MAX)
        try:
            np.broadcast_shapes(bias.shape, acc.shape)
        except ValueError:
            raise ValueError(f"bias shape {bias.shape} does not broadcast to acc shape {acc.shape}") from None
    if requant is None:
        if fmt != "int32":
            raise ValueError(f"out_dtype={fmt!r} needs a requant: without one the output is 'int32'")
        y = requantize_raw(acc, bias, 0, 0, enable=False, out_format="int32", relu=bool(relu))
    else:
        if not isinstance(requant, Requant):
            raise TypeError(f"requant must be a Requant or None (got {type(requant).__name__})")
        lo, hi = OUT_RANGES[fmt]
        if not lo <= requant.zero_point <= hi:
            raise ValueError(f"Requant.zero_point={requant.zero_point} does not fit out_dtype={fmt!r} "
                             f"(must be in [{lo}, {hi}])")
        if requant.per_channel:
            if acc.ndim == 0:
                raise ValueError("a per-channel requant needs acc with a channel (last) axis")
            mult, shift = requant.channel_arrays(acc.shape[-1])
        else:
            mult, shift = np.int64(requant.multiplier), np.int64(requant.shift)
        y = requantize_raw(acc, bias, mult, shift, enable=True, rounding=requant.rounding,
                           zero_point=requant.zero_point, out_format=fmt, relu=bool(relu))
    return y.astype(_OUT_NUMPY[fmt])


# -- parameter object ------------------------------------------------------------------------------
def _param(value, name: str, lo: int, hi: int):
    """An int, or a read-only 1-D int64 array; checked against ``[lo, hi]``."""
    if isinstance(value, Integral) and not isinstance(value, bool) and np.ndim(value) == 0:
        value = int(value)
        if not lo <= value <= hi:
            raise ValueError(f"Requant.{name}={value} is invalid: must be in [{lo}, {hi}]")
        return value
    arr = np.asarray(value)
    if arr.ndim == 0:
        raise TypeError(f"Requant.{name}={value!r} is invalid: must be an int or a 1-D array of ints")
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"Requant.{name} must be an int or a non-empty 1-D array of ints (got shape {arr.shape})")
    arr = _int_array(arr, f"Requant.{name}", lo, hi).copy()
    arr.flags.writeable = False
    return arr


def _tflite_quantize_multiplier(scale: float) -> tuple[int, int]:
    """TFLite QuantizeMultiplier: ``scale ~= q * 2**(exp - 31)``; returns ``(q, exp)``."""
    if scale == 0.0:
        return 0, 0
    frac, exp = math.frexp(scale)
    num, den = (frac * (1 << 31)).as_integer_ratio()  # exact: a power-of-two scaling of a double
    q, rem = divmod(num, den)
    if 2 * rem >= den:  # std::round: half away from zero (frac > 0 here)
        q += 1
    if q == 1 << 31:
        q //= 2
        exp += 1
    if exp < -31:
        q, exp = 0, 0
    return q, exp


def _exact_float32(scale: float) -> tuple[int, int]:
    """Decompose float32 ``scale`` exactly as ``m * 2**-s`` with ``m`` in ``[2**30, 2**31)``."""
    frac, exp = math.frexp(float(np.float32(scale)))
    m = int(frac * (1 << 31))  # exact: 24-bit mantissa
    return m, 31 - exp


@dataclasses.dataclass(frozen=True, eq=False)
class Requant:
    """Integer requantization parameters: real scale ``multiplier * 2**-shift``, zero point, rounding.

    Parameters
    ----------
    multiplier:
        int in ``[0, 2**31)``, or a 1-D array of them (one per output channel).
    shift:
        int in ``[0, 62]``, or a 1-D array of them. If both are arrays they have the same length;
        a scalar next to an array is shared by all channels.
    zero_point:
        Output zero point, an int in ``[-2**15, 2**15)`` (it must also fit the output format).
    rounding:
        ``"half_even"`` (ONNX), ``"half_up"`` (single rounding) or ``"tflite"`` (gemmlowp).
    """

    multiplier: int | np.ndarray
    shift: int | np.ndarray
    zero_point: int = 0
    rounding: str = "half_even"

    def __post_init__(self):
        object.__setattr__(self, "multiplier", _param(self.multiplier, "multiplier", 0, _M_MAX))
        object.__setattr__(self, "shift", _param(self.shift, "shift", 0, SHIFT_MAX))
        m, s = self.multiplier, self.shift
        if isinstance(m, np.ndarray) and isinstance(s, np.ndarray) and m.shape != s.shape:
            raise ValueError(f"Requant.multiplier and Requant.shift have different lengths ({m.size} != {s.size})")
        zp = self.zero_point
        if not (isinstance(zp, Integral) and not isinstance(zp, bool) and _ZP_MIN <= zp <= _ZP_MAX):
            raise ValueError(f"Requant.zero_point={zp!r} is invalid: must be an integer in [{_ZP_MIN}, {_ZP_MAX}]")
        object.__setattr__(self, "zero_point", int(zp))
        if not isinstance(self.rounding, str) or self.rounding not in ROUNDING:
            raise ValueError(f"Requant.rounding={self.rounding!r} is invalid: must be one of "
                             f"{', '.join(map(repr, ROUNDING))}")

    @property
    def per_channel(self) -> bool:
        """True if the multiplier or the shift is a per-channel array."""
        return isinstance(self.multiplier, np.ndarray) or isinstance(self.shift, np.ndarray)

    @property
    def channels(self) -> int | None:
        """Number of channels of a per-channel requant, ``None`` for a per-tensor one."""
        for value in (self.multiplier, self.shift):
            if isinstance(value, np.ndarray):
                return value.size
        return None

    def channel_arrays(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """``(multiplier, shift)`` as int64 arrays of length ``n`` (per-tensor values are repeated)."""
        if not isinstance(n, Integral) or n < 1:
            raise ValueError(f"n={n!r} is invalid: must be a positive integer")
        if self.per_channel and self.channels != n:
            raise ValueError(f"per-channel Requant has {self.channels} channels, but {n} are needed")
        return (np.broadcast_to(np.int64(self.multiplier), (n,)).astype(np.int64),
                np.broadcast_to(np.int64(self.shift), (n,)).astype(np.int64))

    @property
    def scale(self) -> float | np.ndarray:
        """The real scale ``multiplier * 2**-shift`` (float64; for information only)."""
        result = np.ldexp(np.asarray(self.multiplier, dtype=np.float64), -np.asarray(self.shift))
        return float(result) if result.ndim == 0 else result

    @classmethod
    def from_scale(cls, scale, zero_point: int = 0, rounding: str = "half_even") -> "Requant":
        """Integer parameters for a positive real ``scale`` (a float, or a 1-D array per channel).

        ``"tflite"``: TFLite's ``QuantizeMultiplier`` on the float64 scale (``frexp``, round the
        31-bit fraction half away from zero, renormalize at ``2**31``, flush exponents below -31 to
        zero), ``shift = 31 - exponent``. ``"half_up"``/``"half_even"``: the scale is first rounded
        to float32 (ONNX scales are float32) and then decomposed exactly as ``m * 2**-s`` with
        ``m`` in ``[2**30, 2**31)``. Scales needing a shift outside ``[0, 62]`` raise ValueError.
        """
        if not isinstance(rounding, str) or rounding not in ROUNDING:
            raise ValueError(f"rounding={rounding!r} is invalid: must be one of {', '.join(map(repr, ROUNDING))}")
        arr = np.asarray(scale)
        if arr.ndim > 1 or arr.size == 0 or not (np.issubdtype(arr.dtype, np.floating)
                                                 or np.issubdtype(arr.dtype, np.integer)) or arr.dtype == np.bool_:
            raise ValueError(f"scale must be a positive real number or a non-empty 1-D array of them "
                             f"(got {scale!r})")
        values = np.atleast_1d(arr).astype(np.float64)
        mults, shifts = [], []
        for value in values.tolist():
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"scale={value!r} is invalid: must be a finite positive number")
            if rounding == "tflite":
                q, exp = _tflite_quantize_multiplier(value)
                m, s = q, 31 - exp
            else:
                f32 = np.float32(value)
                if not (np.isfinite(f32) and f32 > 0):
                    raise ValueError(f"scale={value!r} is not representable as a positive float32")
                m, s = _exact_float32(f32)
            if not 0 <= s <= SHIFT_MAX:
                raise ValueError(f"scale={value!r} is out of range: it needs shift={s}, outside [0, {SHIFT_MAX}] "
                                 f"(representable scales are about 2**-{SHIFT_MAX - 31} .. 2**31)")
            mults.append(m)
            shifts.append(s)
        if arr.ndim == 0:
            return cls(mults[0], shifts[0], zero_point, rounding)
        return cls(np.array(mults, np.int64), np.array(shifts, np.int64), zero_point, rounding)

    # arrays make the dataclass's generated __eq__ ambiguous: compare by value instead
    def _key(self):
        def norm(v):
            return ("array", tuple(v.tolist())) if isinstance(v, np.ndarray) else v
        return (norm(self.multiplier), norm(self.shift), self.zero_point, self.rounding)

    def __eq__(self, other):
        if not isinstance(other, Requant):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self):
        return hash(self._key())
