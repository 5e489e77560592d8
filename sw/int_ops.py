"""Integer-only non-linear operations: I-BERT (Kim et al., ICML 2021) and integer sigmoid/tanh.

Each function follows the paper's algorithm and signature ``(q, S) -> (q_out, S_out)``: ``q`` is an
integer array holding the real value ``q * S``. The data path is integer-only (NumPy int64); the few
constants that depend on the static scale ``S`` (``floor(b / S)``, ``floor(ln 2 / S)`` ...) are
computed once per call from ``S`` exactly as written in the paper — on hardware they are
compile-time constants of the layer.

=========================  ===========================================  =========================
function                   method                                       paper
=========================  ===========================================  =========================
:func:`i_poly`             ``(q + floor(b/S))**2 + floor(c/(a S**2))``  Algorithm 1
:func:`i_exp`              ``e**x = 2**-z * exp(p)``, ``p`` in           Algorithm 3
                           ``(-ln2, 0]`` by i-poly
                           ``0.3585 (p + 1.353)**2 + 0.344``
:func:`i_softmax`          i-exp of ``q - max(q)``, integer division     Section 3.5
:func:`i_erf`, i-GELU      ``sgn(x) [-0.2888 (min(|x|, 1.769) - 1.769)**2 + 1]``, Algorithm 2
                           ``x/2 (1 + erf(x/sqrt 2))``
:func:`i_sqrt`             Newton iteration on integers                 Algorithm 4
:func:`i_layernorm`        integer mean, i-sqrt of the sum of squares   Section 3.6
:func:`i_sigmoid`,         ``e0/(e0 + e**-|x|)`` with i-exp, ``e0`` =   (this project)
:func:`i_tanh`             i-exp(0); one integer division; tanh via
                           ``e**-2|x|``
=========================  ===========================================  =========================

Where a paper algorithm yields a negative output scale (i-erf and i-GELU, whose polynomial has
``a < 0``) both ``q_out`` and ``S_out`` are negated, which represents the same real values with a
positive scale.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = [
    "i_erf", "i_exp", "i_gelu", "i_layernorm", "i_poly", "i_sigmoid", "i_softmax", "i_sqrt", "i_tanh",
]

EXP_COEFFS = (0.3585, 1.353, 0.344)     # exp(p) ~ a (p + b)**2 + c on (-ln 2, 0]
ERF_COEFFS = (-0.2888, -1.769, 1.0)     # erf(x) ~ sgn(x) [a (min(|x|, -b) + b)**2 + c]
_LN2 = math.log(2.0)


def _int(q, name: str = "q") -> np.ndarray:
    a = np.asarray(q)
    if not np.issubdtype(a.dtype, np.integer):
        raise TypeError(f"{name} must be an integer array, got dtype {a.dtype}")
    return a.astype(np.int64)


def _scale(scale, name: str = "scale") -> float:
    s = float(scale)
    if not math.isfinite(s) or s <= 0:
        raise ValueError(f"{name}={scale!r} is invalid: must be a positive finite float")
    return s


def i_poly(q, scale: float, a: float, b: float, c: float) -> tuple[np.ndarray, float]:
    """I-POLY (Algorithm 1): integer second-order polynomial ``a (x + b)**2 + c`` of ``x = q * scale``.

    Returns ``(q_out, S_out)`` with ``q_out = (q + floor(b/S))**2 + floor(c / (a S**2))`` and
    ``S_out = a S**2`` (negative when ``a < 0``, as in the paper).
    """
    q = _int(q)
    s = _scale(scale)
    q_b = math.floor(b / s)
    q_c = math.floor(c / (a * s * s))
    return (q + q_b) ** 2 + q_c, a * s * s


def i_exp(q, scale: float) -> tuple[np.ndarray, float]:
    """I-EXP (Algorithm 3): ``exp(q * scale)`` for ``q <= 0``.

    ``x = -z ln2 + p`` with ``z = floor(-q / q_ln2)``, ``p`` in ``(-ln2, 0]``; ``exp(p)`` by
    :func:`i_poly` and the factor ``2**-z`` by a right shift (saturating at 63).
    """
    q = _int(q)
    s = _scale(scale)
    if np.any(q > 0):
        raise ValueError("q is invalid: i_exp needs q <= 0 (subtract the maximum first)")
    q_ln2 = math.floor(_LN2 / s)
    if q_ln2 < 1:
        raise ValueError(f"scale={scale!r} is too coarse for i_exp: must be <= ln 2")
    z = (-q) // q_ln2
    q_p = q + z * q_ln2
    q_l, s_l = i_poly(q_p, s, *EXP_COEFFS)
    return np.right_shift(q_l, np.minimum(z, 63)), s_l


def i_softmax(q, scale: float, out_bits: int = 8, axis: int = -1) -> tuple[np.ndarray, float]:
    """Integer softmax along ``axis``.

    i-exp of ``q - max(q)``, then ``floor(q_exp * 2**out_bits / sum(q_exp))`` saturated to
    ``2**out_bits - 1``. The output scale is ``2**-out_bits``; with ``out_bits=8`` it fits uint8.
    """
    q = _int(q)
    s = _scale(scale)
    if not isinstance(out_bits, int) or not 1 <= out_bits <= 16:
        raise ValueError(f"out_bits={out_bits!r} is invalid: must be an integer in 1..16")
    bound = (EXP_COEFFS[1] ** 2 + EXP_COEFFS[2] / EXP_COEFFS[0]) / (s * s) * 2 ** out_bits * q.shape[axis]
    if bound >= 2.0 ** 62:
        raise ValueError(f"scale={scale!r} is too fine for i_softmax: int64 would overflow")
    q_exp, _ = i_exp(q - np.max(q, axis=axis, keepdims=True), s)
    total = np.sum(q_exp, axis=axis, keepdims=True)
    out = np.left_shift(q_exp, out_bits) // total
    return np.minimum(out, (1 << out_bits) - 1), 2.0 ** -out_bits


def i_erf(q, scale: float) -> tuple[np.ndarray, float]:
    """I-ERF (Algorithm 2): ``erf(q * scale)`` by a clipped second-order polynomial.

    Returns a positive output scale (the paper's negative ``S_out`` with ``q_out`` negated).
    """
    q = _int(q)
    s = _scale(scale)
    a, b, c = ERF_COEFFS
    q_abs = np.minimum(np.abs(q), math.floor(-b / s))
    q_l, s_l = i_poly(q_abs, s, a, b, c)
    return -np.sign(q) * q_l, -s_l


def i_gelu(q, scale: float) -> tuple[np.ndarray, float]:
    """I-GELU (Algorithm 2): ``x/2 * (1 + erf(x / sqrt 2))`` of ``x = q * scale``.

    Returns ``(q * (q_erf + floor(1/S_erf)), S * S_erf / 2)`` in the paper's sign convention
    folded to a positive scale.
    """
    q = _int(q)
    s = _scale(scale)
    q_erf, s_erf = i_erf(q, s / math.sqrt(2.0))
    # the paper works with S_erf < 0; with the folded sign this is the same arithmetic
    q_erf, s_erf = -q_erf, -s_erf
    q_1 = math.floor(1.0 / s_erf)
    out = q * (q_erf + q_1)
    return -out, -(s * s_erf / 2.0)


def i_sqrt(n) -> np.ndarray:
    """I-SQRT (Algorithm 4): ``floor(sqrt(n))`` of non-negative integers by Newton iteration.

    Starts from ``2**ceil(bits(n)/2)`` and stops when the iterate no longer decreases.
    """
    n = _int(n, "n")
    if np.any(n < 0):
        raise ValueError("n is invalid: i_sqrt needs n >= 0")
    bits = np.zeros(n.shape, dtype=np.int64)
    v = n.copy()
    while np.any(v):
        bits += v > 0
        v >>= 1
    x = np.left_shift(np.int64(1), (bits + 1) // 2)
    x = np.where(n == 0, 0, x)
    active = n > 0
    while np.any(active):
        safe = np.where(active, x, 1)
        nxt = (safe + n // safe) // 2
        stop = active & (nxt >= x)
        active = active & ~stop
        x = np.where(active, nxt, x)
    return x


def i_layernorm(q, axis: int = -1) -> tuple[np.ndarray, float]:
    """Integer layer normalisation (without the affine part) along ``axis``.

    ``y = q - round(mean(q))``; ``std = i_sqrt(sum(y**2))`` (that is ``sqrt(n) * sigma``);
    ``out = floor(y * floor(2**31 / std) / 2)``. The output scale is ``sqrt(n) / 2**30``
    (independent of the input scale), and ``|out| <= 2**30``. Apply gamma/beta afterwards with a
    per-channel dyadic rescale.
    """
    q = _int(q)
    n = q.shape[axis]
    total = np.sum(q, axis=axis, keepdims=True)
    mean = (2 * total + n) // (2 * n)
    y = q - mean
    if y.size and float(np.max(np.abs(y))) ** 2 * n >= 2.0 ** 62:
        raise ValueError("q is out of range for i_layernorm: n * max|q - mean|**2 must be below 2**62")
    std = i_sqrt(np.sum(y * y, axis=axis, keepdims=True))
    factor = (1 << 31) // np.maximum(std, 1)
    return (y * factor) >> 1, math.sqrt(n) / 2.0 ** 30


def i_sigmoid(q, scale: float, out_bits: int = 15) -> tuple[np.ndarray, float]:
    """Integer sigmoid: ``1 / (1 + exp(-|x|))`` with :func:`i_exp` and one integer division.

    The 1 is ``i_exp(0)`` (so ``sigma(0)`` is exactly 1/2); ``sigma(-x) = 1 - sigma(x)`` gives the
    negative half exactly. Max abs error about 8e-4 at ``S = 2**-10``. Output scale ``2**-out_bits``, values in
    ``[0, 2**out_bits]``.
    """
    q = _int(q)
    s = _scale(scale)
    e, _ = i_exp(-np.abs(q), s)
    one = int(i_exp(np.zeros(1, np.int64), s)[0][0])       # i-exp(0): the integer that stands for 1
    pos = (one << out_bits) // (one + e)
    return np.where(q >= 0, pos, (1 << out_bits) - pos), 2.0 ** -out_bits


def i_tanh(q, scale: float, out_bits: int = 15) -> tuple[np.ndarray, float]:
    """Integer tanh: ``sgn(x) (1 - e) / (1 + e)`` with ``e = exp(-2|x|)`` from :func:`i_exp`.

    The 1 is ``i_exp(0)``; exactly odd. Max abs error about 1.7e-3 at ``S = 2**-10``.
    Output scale ``2**-out_bits``, values in ``[-2**out_bits, 2**out_bits]``.
    """
    q = _int(q)
    s = _scale(scale)
    e, _ = i_exp(-2 * np.abs(q), s)
    one = int(i_exp(np.zeros(1, np.int64), s)[0][0])
    mag = ((one - e) << out_bits) // (one + e)
    return np.sign(q) * mag, 2.0 ** -out_bits
