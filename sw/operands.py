"""Validation of user operands: one clear exception per mistake, naming the argument."""
from __future__ import annotations

import numpy as np

__all__ = ["integer_matrix", "operand_signedness", "int32_vector", "PRECISIONS"]

PRECISIONS = {"int8": 8, "int4": 4}


def integer_matrix(x, name: str, ndim: int = 2) -> np.ndarray:
    if not isinstance(x, np.ndarray):
        x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.integer) or x.dtype == np.bool_:
        raise TypeError(f"{name} must be an integer array (int8/uint8 or wider), got dtype {x.dtype}")
    if x.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {x.shape}")
    if min(x.shape) == 0:
        raise ValueError(f"{name} must not be empty, got shape {x.shape}")
    return x


def operand_signedness(x: np.ndarray, name: str, precision: str) -> bool:
    """True if ``x`` is a signed operand. uint8 arrays are unsigned, all other dtypes signed."""
    bits = PRECISIONS[precision]
    signed = x.dtype != np.uint8
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    xmin, xmax = int(x.min()), int(x.max())
    if xmin < lo or xmax > hi:
        kind = "signed" if signed else "unsigned (uint8 dtype)"
        raise ValueError(f"{name} has values in [{xmin}, {xmax}], outside the {kind} {precision} range [{lo}, {hi}]")
    return signed


def int32_vector(x, name: str, n: int) -> np.ndarray:
    x = integer_matrix(x, name, ndim=1)
    if x.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), got {x.shape}")
    if int(x.min()) < -(1 << 31) or int(x.max()) >= 1 << 31:
        raise ValueError(f"{name} has values outside the int32 range")
    return x.astype(np.int64)
