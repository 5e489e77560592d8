"""Randomized linear algebra on the sketch engine: Hutchinson trace / diagonal and the range finder.

Every product with the random matrix runs on the accelerator (``acc.sketch``: ``Y = A @ Omega``, Omega
generated inside it); the host regenerates the same Omega with :func:`tridsa.sw.sketch_dist.omega`
for the cheap O(n k) parts (``z^T (A z)``), and does the floating-point QR of the range finder.

* :func:`hutchinson`: ``tr(A) ~ mean_i z_i^T A z_i`` and ``diag(A) ~ mean_i z_i * (A z_i)`` (Bekas et al.)
  with Rademacher (or any variance-normalised) probes; the error falls like ``1 / sqrt(samples)``.
* :func:`range_finder` / :func:`low_rank`: ``Q = qr(A Omega)``, ``A ~ Q (Q^T A)`` (Halko, Martinsson,
  Tropp 2011); the error falls towards the best rank-k error as k grows.
* :func:`hutchinson_curve`, :func:`range_finder_curve`: error vs sample count, and :func:`plot_errors`
  saves it as a PNG.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from .operands import integer_matrix
from ..spec.sketch_layout import GAUSSIAN_VARIANCE
from .sketch_dist import omega

__all__ = ["HutchinsonEstimate", "hutchinson", "hutchinson_curve", "range_finder", "low_rank",
           "range_finder_curve", "demo_matrix", "plot_errors"]

_VARIANCE = {"rademacher": 1.0, "gaussian": float(GAUSSIAN_VARIANCE)}


@dataclasses.dataclass
class HutchinsonEstimate:
    """``trace`` and ``diag`` estimates from ``samples`` probes; ``per_sample`` holds each z^T A z."""
    trace: float
    diag: np.ndarray
    samples: int
    per_sample: np.ndarray
    per_sample_diag: np.ndarray


def _square(a) -> np.ndarray:
    a = integer_matrix(a, "a")
    if a.shape[0] != a.shape[1]:
        raise ValueError(f"a must be square, got shape {a.shape}")
    return a


def hutchinson(acc, a, samples: int, key=(0, 0), counter=(0, 0, 0, 0), dist="rademacher") -> HutchinsonEstimate:
    """Estimate ``trace(a)`` and ``diag(a)`` of a square int8 matrix with ``samples`` probes on ``acc``.

    ``dist`` is ``"rademacher"`` (minimal variance) or ``"gaussian"`` (entries divided by their variance).
    """
    a = _square(a)
    if dist not in _VARIANCE:
        raise ValueError(f"dist must be one of {', '.join(_VARIANCE)} for Hutchinson, got {dist!r}")
    y = acc.sketch(a, samples, key, counter, dist).astype(np.float64)          # A @ Z on the accelerator
    z = omega(key, counter, a.shape[0], samples, dist).astype(np.float64)     # the same Z on the host
    prod = z * y / _VARIANCE[dist]                                             # z_i * (A z_i), column i
    per_sample = prod.sum(axis=0)
    return HutchinsonEstimate(trace=float(per_sample.mean()), diag=prod.mean(axis=1), samples=samples,
                              per_sample=per_sample, per_sample_diag=prod)


def hutchinson_curve(acc, a, sample_counts, trials: int = 8, key=(0, 0), dist="rademacher") -> dict:
    """RMS relative errors of trace and diagonal estimates vs sample count, over ``trials`` keys.

    Each trial runs one sketch with ``max(sample_counts)`` probes (trial ``t`` uses key
    ``(key[0] + t, key[1])``); the estimate for ``s`` samples uses its first ``s`` probes.
    """
    a = _square(a)
    counts = sorted(int(s) for s in sample_counts)
    exact_trace = float(np.trace(a.astype(np.int64)))
    exact_diag = np.diag(a).astype(np.float64)
    trace_err = np.zeros((trials, len(counts)))
    diag_err = np.zeros((trials, len(counts)))
    for t in range(trials):
        est = hutchinson(acc, a, counts[-1], ((key[0] + t) & 0xFFFFFFFF, key[1]), dist=dist)
        for j, s in enumerate(counts):
            trace = est.per_sample[:s].mean()
            diag = est.per_sample_diag[:, :s].mean(axis=1)
            trace_err[t, j] = abs(trace - exact_trace) / max(abs(exact_trace), 1.0)
            diag_err[t, j] = np.linalg.norm(diag - exact_diag) / max(np.linalg.norm(exact_diag), 1.0)
    rms = lambda e: np.sqrt((e ** 2).mean(axis=0))
    return {"samples": counts, "trace_error": rms(trace_err), "diag_error": rms(diag_err)}


def range_finder(acc, a, k: int, key=(0, 0), counter=(0, 0, 0, 0), dist="gaussian") -> np.ndarray:
    """Orthonormal basis ``Q`` (M x k, float64) of ``range(a @ Omega)``, the sketch run on ``acc``."""
    y = acc.sketch(a, k, key, counter, dist).astype(np.float64)
    q, _ = np.linalg.qr(y)
    return q


def low_rank(acc, a, k: int, key=(0, 0), counter=(0, 0, 0, 0), dist="gaussian") -> tuple:
    """Rank-``k`` approximation ``a ~ Q @ B`` with ``Q = range_finder(...)`` and ``B = Q.T @ a``."""
    q = range_finder(acc, a, k, key, counter, dist)
    return q, q.T @ np.asarray(a, np.float64)


def range_finder_curve(acc, a, ks, key=(0, 0), dist="gaussian") -> dict:
    """Relative Frobenius error ``||a - Q Q^T a|| / ||a||`` vs k, next to the optimal rank-k error (SVD)."""
    a = integer_matrix(a, "a")
    af = a.astype(np.float64)
    norm = np.linalg.norm(af)
    sigma = np.linalg.svd(af, compute_uv=False)
    ks = sorted(int(k) for k in ks)
    errors, optimal = [], []
    for k in ks:
        q, b = low_rank(acc, a, k, key, dist=dist)
        errors.append(np.linalg.norm(af - q @ b) / norm)
        optimal.append(np.sqrt((sigma[k:] ** 2).sum()) / norm)
    return {"samples": ks, "error": np.array(errors), "optimal": np.array(optimal)}


def demo_matrix(n: int, decay: float = 0.7, seed: int = 0, symmetric: bool = True) -> np.ndarray:
    """An int8 ``n x n`` test matrix with geometrically decaying spectrum (``sigma_i ~ decay**i``)."""
    rng = np.random.default_rng(seed)
    u, _ = np.linalg.qr(rng.standard_normal((n, n)))
    v = u if symmetric else np.linalg.qr(rng.standard_normal((n, n)))[0]
    m = (u * decay ** np.arange(n)) @ v.T
    return np.round(m * (127 / np.abs(m).max())).astype(np.int8)


def plot_errors(curves: dict, path, title: str = "error vs samples") -> None:
    """Save a log-log plot of error curves ``{label: (samples, errors)}`` as a PNG at ``path``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, (xs, ys) in curves.items():
        ax.loglog(xs, ys, marker="o", label=label)
    ax.set_xlabel("samples (sketch columns)")
    ax.set_ylabel("relative error")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
