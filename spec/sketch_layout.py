"""RNG / SKETCH constants the gateware and the driver share: distribution codes, the parameter block's
slots and the RNG's lane count (layouts: :mod:`tridsa.sw.sketch_ops`, distributions:
:mod:`tridsa.sw.sketch_dist`)."""

__all__ = ["DISTRIBUTIONS", "GAUSSIAN_VARIANCE", "GAUSSIAN_BOUND", "PARAM_NAMES", "rng_lanes_used"]

#: Distribution names; the index of a name is its code in the gateware mapper.
DISTRIBUTIONS = ("rademacher", "sparse_sign", "uniform", "gaussian")
#: Variance of the "gaussian" entries: 4 * (256**2 - 1) / 12.
GAUSSIAN_VARIANCE = 21845
#: Largest magnitude of a "gaussian" entry: 4 * 255 / 2.
GAUSSIAN_BOUND = 510
#: uint32 slots of the SKETCH parameter block, in order.
PARAM_NAMES = ("key0", "key1", "ctr0", "ctr1", "ctr2", "ctr3", "threshold", "lo", "span_m1")


def rng_lanes_used(config) -> int:
    """Lanes the RNG instruction uses: the largest power of two <= ``rng_lanes`` (a plain width adapter)."""
    return 1 << (config.rng_lanes.bit_length() - 1)
