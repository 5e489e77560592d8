"""Pipelined Philox4x32-10 gateware: one 128-bit block per cycle per lane.

:class:`PhiloxCore` computes ``philox4x32_10(counter, key)`` for one (counter, key) beat per cycle,
bit-exact with :func:`tridsa.sw.philox.philox4x32_10`. :class:`PhiloxStream` runs several cores side
by side from a small command stream (key, start counter, block count): the random source of the
sketch engine.

Both pipelines stall as a whole: a pipeline advances unless its output beat is valid and not taken
(``advance = ~o.valid | o.ready``), so a held ``o.ready`` gives one beat per cycle and ``i.ready``
never depends on ``i.valid``.
"""
from __future__ import annotations

from amaranth.hdl import Cat, Module, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..spec.philox import M0, M1, ROUNDS, W0, W1

__all__ = ["WORD", "BLOCK_LAYOUT", "KEY_LAYOUT", "CORE_INPUT_LAYOUT", "PhiloxCore", "PhiloxStream"]

WORD = unsigned(32)
#: Four 32-bit words, word 0 least significant (a counter or an output block).
BLOCK_LAYOUT = data.ArrayLayout(WORD, 4)
#: The 64-bit key as two words.
KEY_LAYOUT = data.ArrayLayout(WORD, 2)
#: Input beat of :class:`PhiloxCore`.
CORE_INPUT_LAYOUT = data.StructLayout({"counter": BLOCK_LAYOUT, "key": KEY_LAYOUT})

_MASK = 0xFFFFFFFF


def _check_stages(stages_per_round):
    if stages_per_round not in (1, 2) or isinstance(stages_per_round, bool):
        raise ValueError(f"stages_per_round must be 1 or 2, got {stages_per_round!r}")
    return stages_per_round


def _philox_pipeline(m: Module, counter, key, advance, stages_per_round: int, name: str):
    """Add the 10 unrolled rounds to ``m``; every register loads only when ``advance`` is high.

    ``counter`` (4 values of 32 bits) and ``key`` (2 values) enter the first stage; returns the four
    output words, ``ROUNDS * stages_per_round`` advancing cycles later. The key travels with its
    data; round ``i`` uses ``key + i * (W0, W1)`` (a constant add per round, no carry chain across rounds).
    """
    c = list(counter)
    k = list(key)
    for r in range(ROUNDS):
        if stages_per_round == 2:
            # stage a: register the two products, the pass-through words and the key
            p0 = Signal(64, name=f"{name}_r{r}_p0")
            p1 = Signal(64, name=f"{name}_r{r}_p1")
            c1 = Signal(32, name=f"{name}_r{r}_c1")
            c3 = Signal(32, name=f"{name}_r{r}_c3")
            ka = [Signal(32, name=f"{name}_r{r}_ka{j}") for j in range(2)]
            with m.If(advance):
                m.d.sync += [p0.eq(c[0] * M0), p1.eq(c[2] * M1), c1.eq(c[1]), c3.eq(c[3]),
                             ka[0].eq(k[0]), ka[1].eq(k[1])]
            k = ka
        else:
            p0, p1, c1, c3 = c[0] * M0, c[2] * M1, c[1], c[3]
        k0 = (k[0] + ((r * W0) & _MASK))[:32]
        k1 = (k[1] + ((r * W1) & _MASK))[:32]
        nc = [Signal(32, name=f"{name}_r{r}_c{j}") for j in range(4)]
        nk = [Signal(32, name=f"{name}_r{r}_k{j}") for j in range(2)]
        with m.If(advance):
            m.d.sync += [
                nc[0].eq(p1[32:64] ^ c1 ^ k0),
                nc[1].eq(p1[0:32]),
                nc[2].eq(p0[32:64] ^ c3 ^ k1),
                nc[3].eq(p0[0:32]),
            ]
            if r != ROUNDS - 1:
                m.d.sync += [nk[0].eq(k[0]), nk[1].eq(k[1])]
        c, k = nc, nk
    return c


class PhiloxCore(wiring.Component):
    """Philox4x32-10, fully pipelined: 10 unrolled rounds, one block per cycle.

    Parameters
    ----------
    stages_per_round : 1 or 2
        Pipeline registers per round; 2 registers the 32 x 32 products before the xor (for timing).

    Attributes
    ----------
    latency : int
        Cycles from an accepted input beat to its output beat when ``o.ready`` is held high
        (``10 * stages_per_round``).

    Members
    -------
    i : In(stream.Signature(CORE_INPUT_LAYOUT))
        ``counter`` (4 words, word 0 least significant) and ``key`` (2 words).
    o : Out(stream.Signature(BLOCK_LAYOUT))
        ``philox4x32_10(counter, key)``, in input order.
    """

    def __init__(self, stages_per_round: int = 1):
        self._stages = _check_stages(stages_per_round)
        super().__init__({
            "i": In(stream.Signature(CORE_INPUT_LAYOUT)),
            "o": Out(stream.Signature(BLOCK_LAYOUT)),
        })

    @property
    def latency(self) -> int:
        return ROUNDS * self._stages

    def elaborate(self, platform):
        m = Module()
        advance = Signal()
        m.d.comb += [advance.eq(~self.o.valid | self.o.ready), self.i.ready.eq(advance)]
        valid = Signal(self.latency)
        with m.If(advance):
            m.d.sync += valid.eq(Cat(self.i.valid, valid[:-1]))
        words = _philox_pipeline(m, [self.i.payload.counter[j] for j in range(4)],
                                 [self.i.payload.key[j] for j in range(2)], advance, self._stages, "core")
        m.d.comb += [self.o.valid.eq(valid[-1])] + [self.o.payload[j].eq(words[j]) for j in range(4)]
        return m


class PhiloxStream(wiring.Component):
    """Philox word stream for the sketch engine: ``lanes`` blocks per cycle from one command.

    A command ``(key, counter, count)`` produces the blocks ``philox4x32_10(counter + j, key)`` for
    ``j = 0 .. count - 1`` (128-bit counter arithmetic, wrapping), ``lanes`` per output beat: lane ``l``
    of beat ``b`` is block ``j = b * lanes + l``. The beat holding block ``count - 1`` has ``last`` set;
    its lanes past ``count - 1`` carry the following blocks, which the consumer drops. A command with
    ``count == 0`` is accepted and produces nothing. The next command is accepted the cycle after the
    last beat of the previous one enters the pipeline.

    Parameters
    ----------
    lanes : int
        Parallel Philox cores (``Config.rng_lanes``), 1..16.
    count_width : int
        Bits of the ``count`` field, 1..64.
    stages_per_round : 1 or 2
        As for :class:`PhiloxCore`.

    Members
    -------
    cmd : In(stream.Signature(StructLayout({"key", "counter", "count"})))
    o : Out(stream.Signature(StructLayout({"blocks": ArrayLayout(BLOCK_LAYOUT, lanes), "last": 1})))
    """

    def __init__(self, lanes: int, *, count_width: int = 32, stages_per_round: int = 1):
        if isinstance(lanes, bool) or not isinstance(lanes, int) or not 1 <= lanes <= 16:
            raise ValueError(f"lanes must be an integer in 1..16, got {lanes!r}")
        if isinstance(count_width, bool) or not isinstance(count_width, int) or not 1 <= count_width <= 64:
            raise ValueError(f"count_width must be an integer in 1..64, got {count_width!r}")
        self._lanes = lanes
        self._count_width = count_width
        self._stages = _check_stages(stages_per_round)
        self.cmd_layout = data.StructLayout({"key": KEY_LAYOUT, "counter": BLOCK_LAYOUT,
                                             "count": unsigned(count_width)})
        self.out_layout = data.StructLayout({"blocks": data.ArrayLayout(BLOCK_LAYOUT, lanes), "last": 1})
        super().__init__({
            "cmd": In(stream.Signature(self.cmd_layout)),
            "o": Out(stream.Signature(self.out_layout)),
        })

    @property
    def lanes(self) -> int:
        return self._lanes

    @property
    def latency(self) -> int:
        """Cycles from a beat entering the pipeline to leaving it with ``o.ready`` held high."""
        return ROUNDS * self._stages

    def elaborate(self, platform):
        m = Module()
        lanes = self._lanes
        busy = Signal()
        cur = Signal(128)
        key = Signal(KEY_LAYOUT)
        remaining = Signal(self._count_width)
        advance = Signal()
        last_beat = Signal()
        m.d.comb += [
            advance.eq(~self.o.valid | self.o.ready),
            last_beat.eq(remaining <= lanes),
            self.cmd.ready.eq(~busy),
        ]
        with m.If(self.cmd.valid & self.cmd.ready):
            m.d.sync += [
                cur.eq(self.cmd.payload.counter.as_value()),
                key.eq(self.cmd.payload.key),
                remaining.eq(self.cmd.payload.count),
                busy.eq(self.cmd.payload.count != 0),
            ]
        with m.Elif(busy & advance):
            m.d.sync += [cur.eq(cur + lanes), remaining.eq(remaining - lanes)]
            with m.If(last_beat):
                m.d.sync += busy.eq(0)

        valid = Signal(self.latency)
        last = Signal(self.latency)
        with m.If(advance):
            m.d.sync += [valid.eq(Cat(busy, valid[:-1])), last.eq(Cat(last_beat, last[:-1]))]
        m.d.comb += [self.o.valid.eq(valid[-1]), self.o.payload.last.eq(last[-1])]
        for lane in range(lanes):
            ctr = Signal(128, name=f"lane{lane}_counter")
            m.d.comb += ctr.eq(cur + lane)  # 128-bit add: carries across all four words
            words = _philox_pipeline(m, [ctr[32 * j:32 * j + 32] for j in range(4)],
                                     [key[0], key[1]], advance, self._stages, f"lane{lane}")
            m.d.comb += [self.o.payload.blocks[lane][j].eq(words[j]) for j in range(4)]
        return m
