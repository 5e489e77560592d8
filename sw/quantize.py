"""Post-training quantization helpers: weights, activations, BN folding, dyadic rescaling.

Everything that turns float parameters into integers (scales, zero points, multipliers) runs once,
offline, in float. Everything that runs at inference time (:func:`rescale`, :func:`round_shift`,
:func:`unpack_int4`) is integer-only NumPy int64 with explicit saturation.

Scales follow the usual affine convention ``real = scale * (q - zero_point)``. A *dyadic* scale is
``multiplier * 2**-shift`` with ``0 <= multiplier < 2**31`` and ``0 <= shift <= 62``, the same
convention as :class:`tridsa.Requant`.
"""
from __future__ import annotations

import numpy as np

__all__ = [
    "DTYPE_RANGES", "act_qparams", "dyadic", "fold_bn", "pack_int4", "quantize_bias",
    "quantize_weights", "rescale", "round_shift", "to_int8", "unpack_int4",
]

#: Saturation bounds of every integer format used by the workloads.
DTYPE_RANGES = {
    "int4": (-8, 7),
    "int8": (-128, 127),
    "uint8": (0, 255),
    "int16": (-(1 << 15), (1 << 15) - 1),
    "int32": (-(1 << 31), (1 << 31) - 1),
}

_ROUNDINGS = ("half_up", "half_even")


def _range(dtype: str) -> tuple[int, int]:
    if dtype not in DTYPE_RANGES:
        raise ValueError(f"dtype={dtype!r} is invalid: must be one of {sorted(DTYPE_RANGES)}")
    return DTYPE_RANGES[dtype]


def dyadic(scale) -> tuple[np.ndarray, np.ndarray]:
    """Integer ``(multiplier, shift)`` with ``multiplier * 2**-shift`` closest to ``scale``.

    Parameters
    ----------
    scale : float or array_like
        Positive real scale(s), each below ``2**31``.

    Returns
    -------
    multiplier, shift : numpy.ndarray of int64
        Same shape as ``scale``. ``multiplier`` is normalised to ``[2**30, 2**31)`` unless the
        shift would exceed 62, in which case precision is dropped (tiny scales may become 0).
    """
    s = np.asarray(scale, dtype=np.float64)
    if not np.all(np.isfinite(s)) or np.any(s <= 0) or np.any(s >= 2.0 ** 31):
        raise ValueError(f"scale={scale!r} is invalid: every entry must be finite and in (0, 2**31)")
    frac, exp = np.frexp(s)                                        # s = frac * 2**exp, frac in [0.5, 1)
    mult = np.round(frac * 2.0 ** 31).astype(np.int64)
    shift = (31 - exp).astype(np.int64)
    carry = mult == (1 << 31)
    mult = np.where(carry, mult >> 1, mult)
    shift = np.where(carry, shift - 1, shift)
    excess = np.maximum(shift - 62, 0)
    if np.any(excess):
        mult = np.where(excess > 0, round_shift(mult, np.minimum(excess, 62)), mult)
        shift = np.minimum(shift, 62)
    if np.any(shift < 0):
        raise ValueError(f"scale={scale!r} is too large for a dyadic multiplier (needs shift >= 0)")
    return mult, shift


def round_shift(x, shift, rounding: str = "half_up") -> np.ndarray:
    """Divide integers by ``2**shift`` with rounding; integer-only.

    Parameters
    ----------
    x : array_like of int
        Dividends (int64 range).
    shift : int or array_like of int
        Non-negative shift(s), broadcast against ``x``.
    rounding : {"half_up", "half_even"}
        Ties go towards +infinity, or to the even neighbour.
    """
    if rounding not in _ROUNDINGS:
        raise ValueError(f"rounding={rounding!r} is invalid: must be one of {_ROUNDINGS}")
    x = np.asarray(x, dtype=np.int64)
    s = np.asarray(shift, dtype=np.int64)
    if np.any(s < 0) or np.any(s > 62):
        raise ValueError("shift is invalid: must be in 0..62")
    half = np.where(s > 0, np.left_shift(np.int64(1), np.maximum(s - 1, 0)), 0)
    q = np.right_shift(x, s)
    r = x - np.left_shift(q, s)
    up = r > half
    if rounding == "half_up":
        up |= (r == half) & (s > 0)
    else:
        up |= (r == half) & (s > 0) & ((q & 1) == 1)
    return q + up.astype(np.int64)


def rescale(x, multiplier, shift, zero_point: int = 0, dtype: str = "int8",
            rounding: str = "half_up", relu: bool = False) -> np.ndarray:
    """Integer requantization ``clamp(zero_point + round_shift(x * multiplier, shift))``.

    The inference-time glue of the workloads (residual adds, pooling, hidden states) uses this;
    it has the same arithmetic as the accelerator's output stage.

    Parameters
    ----------
    x : array_like of int
        Values with ``|x| < 2**31`` (checked), e.g. an int32 accumulator or ``q - zero_point``.
    multiplier, shift : int or array_like of int
        Dyadic scale from :func:`dyadic`, per tensor or broadcast along the last axis.
    zero_point : int
        Added after rounding.
    dtype : str
        Output saturation range, a key of :data:`DTYPE_RANGES`.
    relu : bool
        Also clamp below at ``zero_point``.
    """
    lo, hi = _range(dtype)
    x = np.asarray(x, dtype=np.int64)
    if x.size and np.max(np.abs(x)) >= 1 << 31:
        raise ValueError("x is out of range: |x| must be below 2**31")
    m = np.asarray(multiplier, dtype=np.int64)
    if np.any(m < 0) or np.any(m >= 1 << 31):
        raise ValueError("multiplier is invalid: must be in 0..2**31-1")
    y = round_shift(x * m, shift, rounding) + int(zero_point)
    if relu:
        lo = max(lo, int(zero_point))
    return np.clip(y, lo, hi)


def quantize_weights(w, bits: int = 8, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-channel weight quantization.

    Parameters
    ----------
    w : array_like of float
        Weights; channel ``c`` is ``np.take(w, c, axis)``.
    bits : {8, 4}
        Values land in ``[-(2**(bits-1) - 1), 2**(bits-1) - 1]`` (127 or 7).
    axis : int
        The output-channel axis.

    Returns
    -------
    q : numpy.ndarray of int8
    scale : numpy.ndarray of float64, one per channel
    """
    if bits not in (4, 8):
        raise ValueError(f"bits={bits!r} is invalid: must be 4 or 8")
    w = np.asarray(w, dtype=np.float64)
    qmax = (1 << (bits - 1)) - 1
    other = tuple(i for i in range(w.ndim) if i != axis % w.ndim)
    amax = np.max(np.abs(w), axis=other) if other else np.abs(w)
    scale = np.where(amax > 0, amax / qmax, 1.0)
    shape = [1] * w.ndim
    shape[axis] = -1
    q = np.clip(np.round(w / scale.reshape(shape)), -qmax, qmax).astype(np.int8)
    return q, scale


def quantize_bias(b, scale) -> np.ndarray:
    """Bias in the accumulator domain: ``round(b / scale)`` as int32 (``scale = s_in * s_w``)."""
    q = np.round(np.asarray(b, dtype=np.float64) / scale)
    if np.any(np.abs(q) >= 2 ** 31):
        raise ValueError("bias does not fit int32 at this scale")
    return q.astype(np.int32)


def act_qparams(lo: float, hi: float, dtype: str = "int8", symmetric: bool = False) -> tuple[float, int]:
    """Activation ``(scale, zero_point)`` covering the calibrated range ``[lo, hi]``.

    The range is widened to include 0 so that real zero is exactly representable.
    Symmetric quantization uses ``zero_point = 0`` and ``qmax = 2**(bits-1) - 1``.
    """
    qmin, qmax = _range(dtype)
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    if symmetric:
        amax = max(-lo, hi)
        return (amax / qmax if amax > 0 else 1.0), 0
    if hi - lo <= 0:
        return 1.0, qmin if qmin < 0 else 0
    scale = (hi - lo) / (qmax - qmin)
    zp = int(np.clip(np.round(qmin - lo / scale), qmin, qmax))
    return scale, zp


def fold_bn(w, b, gamma, beta, mean, var, eps: float = 1e-5) -> tuple[np.ndarray, np.ndarray]:
    """Fold an inference BatchNorm that follows a conv/linear into its weights (axis 0) and bias."""
    w = np.asarray(w, dtype=np.float64)
    k = np.asarray(gamma, dtype=np.float64) / np.sqrt(np.asarray(var, dtype=np.float64) + eps)
    b = np.zeros(w.shape[0]) if b is None else np.asarray(b, dtype=np.float64)
    return w * k.reshape((-1,) + (1,) * (w.ndim - 1)), (b - mean) * k + beta


def pack_int4(q) -> np.ndarray:
    """Pack int4 values (``[-8, 7]``, flattened, padded with 0 to even length) two per byte, low nibble first."""
    q = np.asarray(q).ravel().astype(np.int64)
    if q.size and (q.min() < -8 or q.max() > 7):
        raise ValueError("q is out of range: int4 values must be in [-8, 7]")
    if q.size % 2:
        q = np.append(q, 0)
    n = q & 0xF
    return (n[0::2] | (n[1::2] << 4)).astype(np.uint8)


def unpack_int4(packed, count: int) -> np.ndarray:
    """Inverse of :func:`pack_int4`: the first ``count`` signed values as int8."""
    p = np.asarray(packed, dtype=np.uint8).astype(np.int64)
    if count > 2 * p.size or count < 0:
        raise ValueError(f"count={count} is invalid: must be in 0..{2 * p.size}")
    n = np.stack([p & 0xF, p >> 4], axis=1).ravel()[:count]
    return np.where(n >= 8, n - 16, n).astype(np.int8)


def to_int8(x, scale: float) -> np.ndarray:
    """Integer rescale of ``x`` (saturated to int32 first) by ``scale`` (a dyadic constant) to int8."""
    m, sh = dyadic(scale)
    x = np.clip(np.asarray(x, np.int64), -(1 << 31) + 1, (1 << 31) - 1)
    return rescale(x, int(m), int(sh), 0, "int8").astype(np.int8)
