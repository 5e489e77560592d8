"""Gateware mapper from Philox words to sketch-matrix entries (Rademacher, sparse sign, uniform, gaussian).

Each entry is a function of its own 32-bit word only, exactly as :mod:`tridsa.sw.sketch_dist`
defines it; the distribution and its parameters are run-time inputs whose values come from
:func:`tridsa.sw.sketch_dist.dist_params`.
"""
from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..spec.sketch_layout import DISTRIBUTIONS, GAUSSIAN_BOUND

__all__ = ["SketchDistMap"]

_CODE = {name: code for code, name in enumerate(DISTRIBUTIONS)}


class SketchDistMap(wiring.Component):
    """Map ``n`` uint32 words per beat to ``n`` int32 entries of the selected distribution.

    One register stage (latency 1 when ``o.ready`` is held); the stage advances unless its output is
    valid and not taken, so ``i.ready = ~o.valid | o.ready``. The parameter inputs must be stable
    while beats are in flight.

    Parameters
    ----------
    n : int
        Words per beat, 1..256 (``4 * Config.rng_lanes`` for a :class:`~tridsa.hw.philox.PhiloxStream`).

    Members
    -------
    i : In(stream.Signature(ArrayLayout(unsigned(32), n)))
    o : Out(stream.Signature(ArrayLayout(signed(32), n)))
    code : In(2)
        Index of the distribution in :data:`tridsa.sw.sketch_dist.DISTRIBUTIONS`.
    threshold : In(32)
        sparse_sign: an entry is nonzero iff the word's low 31 bits are below it (at most 2**31).
    lo : In(signed(32))
        uniform: smallest value.
    span : In(33)
        uniform: number of values ``hi - lo + 1`` (1..2**32).
    """

    def __init__(self, n: int):
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 256:
            raise ValueError(f"n must be an integer in 1..256, got {n!r}")
        self._n = n
        super().__init__({
            "i": In(stream.Signature(data.ArrayLayout(unsigned(32), n))),
            "o": Out(stream.Signature(data.ArrayLayout(signed(32), n))),
            "code": In(2),
            "threshold": In(32),
            "lo": In(signed(32)),
            "span": In(33),
        })

    @property
    def latency(self) -> int:
        return 1

    def elaborate(self, platform):
        m = Module()
        advance = Signal()
        m.d.comb += [advance.eq(~self.o.valid | self.o.ready), self.i.ready.eq(advance)]
        with m.If(advance):
            m.d.sync += self.o.valid.eq(self.i.valid)
        for j in range(self._n):
            w = self.i.payload[j]
            sign = Mux(w[31], -1, 1)
            entry = Signal(signed(32), name=f"entry{j}")
            with m.Switch(self.code):
                with m.Case(_CODE["rademacher"]):
                    m.d.comb += entry.eq(sign)
                with m.Case(_CODE["sparse_sign"]):
                    m.d.comb += entry.eq(Mux(w[:31] < self.threshold, sign, 0))
                with m.Case(_CODE["uniform"]):
                    m.d.comb += entry.eq(self.lo + (w * self.span)[32:65])
                with m.Case(_CODE["gaussian"]):
                    m.d.comb += entry.eq(w[0:8] + w[8:16] + w[16:24] + w[24:32] - GAUSSIAN_BOUND)
            with m.If(advance):
                m.d.sync += self.o.payload[j].eq(entry)
        return m
