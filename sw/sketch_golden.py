"""Golden semantics of the RNG and SKETCH instructions on a memory image (layout: :mod:`.sketch_ops`).

The error checks define the order in which the hardware must report problems:

* RNG: ``BAD_SHAPE`` (``n == 0``), then ``ADDR_RANGE`` (output beyond memory).
* SKETCH: ``BAD_SHAPE`` (``m``, ``K`` or ``k`` zero), then ``ADDR_RANGE`` (A, Y or the parameter block
  beyond memory), then, after the parameter block is read, ``BAD_MODE`` when the parameters of the
  selected distribution are outside their range (sparse_sign: ``threshold > 2**31``; uniform:
  ``lo + span - 1 > 2**31 - 1``). An instruction with an error writes nothing.
"""
from __future__ import annotations

import numpy as np

from ..spec import isa
from .philox import random_uint32
from ..spec.sketch_layout import DISTRIBUTIONS
from .sketch_dist import gaussian, omega_words, rademacher, sparse_sign, uniform
from .sketch_ops import RngGeometry, SketchGeometry, a_values, pack_y, unpack_params

__all__ = ["check_rng", "check_sketch", "check_sketch_params", "execute_rng", "execute_sketch", "sketch_omega"]


def _key_counter(values: dict) -> tuple:
    return (values["key0"], values["key1"]), tuple(values[f"ctr{i}"] for i in range(4))


def check_rng(fields: dict, config) -> int:
    """Error code of an RNG instruction (0 if legal)."""
    if fields["n"] == 0:
        return isa.ERRORS["BAD_SHAPE"]
    if fields["out_addr"] + RngGeometry(config, fields["n"]).words > config.mem_depth:
        return isa.ERRORS["ADDR_RANGE"]
    return 0


def execute_rng(memory: np.ndarray, fields: dict, config) -> int:
    """Execute one RNG instruction in place on ``memory``; return the error code."""
    error = check_rng(fields, config)
    if error:
        return error
    geo = RngGeometry(config, fields["n"])
    key, counter = _key_counter(fields)
    words = random_uint32(key, counter, geo.stream_words).astype("<u4").view(np.uint8)
    memory[fields["out_addr"]:fields["out_addr"] + geo.words] = words.reshape(geo.words, config.mem_width)
    return 0


def geometry(fields: dict, config) -> SketchGeometry:
    return SketchGeometry(config, fields["m"], fields["K"], fields["k"])


def check_sketch(fields: dict, config) -> int:
    """Error code of a SKETCH instruction's fields (0 if legal); see :func:`check_sketch_params`."""
    if min(fields["m"], fields["K"], fields["k"]) == 0:
        return isa.ERRORS["BAD_SHAPE"]
    geo = geometry(fields, config)
    for addr, words in ((fields["a_addr"], geo.a_words), (fields["y_addr"], geo.y_words),
                        (fields["p_addr"], geo.p_words)):
        if addr + words > config.mem_depth:
            return isa.ERRORS["ADDR_RANGE"]
    return 0


def check_sketch_params(params: dict, dist: int) -> int:
    """``BAD_MODE`` if the parameter block is out of range for distribution code ``dist``, else 0."""
    name = DISTRIBUTIONS[dist]
    if name == "sparse_sign" and params["threshold"] > 1 << 31:
        return isa.ERRORS["BAD_MODE"]
    if name == "uniform" and params["lo"] + params["span_m1"] > (1 << 31) - 1:
        return isa.ERRORS["BAD_MODE"]
    return 0


def sketch_omega(params: dict, dist: int, K: int, k: int) -> np.ndarray:
    """Omega (K, k) int32 from a parameter block (register values, see :func:`tridsa.sw.sketch_dist.dist_params`)."""
    key, counter = _key_counter(params)
    words = omega_words(key, counter, K, k)
    name = DISTRIBUTIONS[dist]
    if name == "rademacher":
        return rademacher(words)
    if name == "sparse_sign":
        return sparse_sign(words, params["threshold"])
    if name == "uniform":
        return uniform(words, params["lo"], params["lo"] + params["span_m1"])
    return gaussian(words)


def execute_sketch(memory: np.ndarray, fields: dict, config) -> int:
    """Execute one SKETCH instruction in place on ``memory``; return the error code."""
    error = check_sketch(fields, config)
    if error:
        return error
    geo = geometry(fields, config)
    params = unpack_params(memory[fields["p_addr"]:fields["p_addr"] + geo.p_words])
    error = check_sketch_params(params, fields["dist"])
    if error:
        return error
    a = a_values(memory[fields["a_addr"]:fields["a_addr"] + geo.a_words], geo, bool(fields["a_signed"]))
    om = np.zeros((geo.K, geo.nct * geo.tile_cols), np.int64)
    om[:, :geo.k] = sketch_omega(params, fields["dist"], geo.K, geo.k)
    y = a @ om                                             # exact: |y| < 2**8 * 2**31 * 2**16
    y = ((y + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)          # int32 accumulators wrap
    memory[fields["y_addr"]:fields["y_addr"] + geo.y_words] = pack_y(y, geo)
    return 0
