"""An LSTM layer: input and hidden 1024, 25 steps, batch 1 and batch 64 (as in DeepBench's LSTM inference).

The input projection of all 25 steps is one GEMM (25 B x 1024 x 4096); each step's recurrent GEMM
(B x 1024 x 4096) waits for the previous step's hidden state. Both requantize to the Q10 gate format
(int32); the cell (integer sigmoid / tanh, :mod:`tridsa.sw.int_ops`, Q15 cell state) runs on the host,
as in :mod:`tridsa.sw.workloads.rnn`.
"""
from __future__ import annotations

import numpy as np

from ..quantize import to_int8
from ..requant import Requant
from ..workloads.rnn import GATE_FRAC, lstm_cell

__all__ = ["lstm", "HIDDEN", "STEPS", "BATCHES"]

HIDDEN, STEPS, BATCHES = 1024, 25, (1, 64)
#: int8 x int8 sums over 1024 (std ~1.3e5) to Q10 gates of std ~2 (2048).
GATE_REQUANT = Requant.from_scale(2048 / 1.3e5, 0, "half_up")


def lstm(rec, batches=BATCHES, steps: int = STEPS) -> None:
    wx = rec.weights("wx", (HIDDEN, 4 * HIDDEN))
    wh = rec.weights("wh", (HIDDEN, 4 * HIDDEN))
    gs = 2.0 ** -GATE_FRAC
    for batch in batches:
        xs = np.random.default_rng(batch).integers(-100, 101, (steps * batch, HIDDEN), dtype=np.int8)
        gx = rec._call("matmul", f"b{batch}/wx", f"{steps * batch}x{HIDDEN}x{4 * HIDDEN}", xs, wx, None,
                       GATE_REQUANT, False, "int8", "int32").reshape(steps, batch, 4 * HIDDEN).astype(np.int64)
        h = np.zeros((batch, HIDDEN), np.int8)
        c = np.zeros((batch, HIDDEN), np.int64)
        for t in range(steps):
            z = gx[t] + rec._call("matmul", f"b{batch}/wh[{t}]", f"{batch}x{HIDDEN}x{4 * HIDDEN}", h, wh, None,
                                  GATE_REQUANT, False, "int8", "int32")
            hq30, c = lstm_cell(z, c, gs)
            h = to_int8(hq30, 127.0 / 2 ** 30)                    # h in [-1, 1] at scale 1/127
