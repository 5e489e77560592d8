"""Cycle-level mirror of the gather engine's main loop (hw/gather.py): the cycles of a legal GATHER.

The golden backend's cycle model (:func:`tridsa.sw.cycle_model.gather_cost`) steps this mirror one clock
cycle at a time. It holds the engine's registers that decide *when* things happen, not the data: the
check pass's word counters, the four :class:`~tridsa.hw.memory.BlockReader` s (command, credits,
response FIFO), the :class:`~tridsa.hw.memory.MemArbiter`'s skid buffers and round robin, the word
splitters, the :class:`~tridsa.hw.index_queue.IndexQueue` walk and its entry FIFO, the
:class:`~tridsa.hw.gather.PoolingUnit`'s two stages, output buffer and mean divider, and the writer.
The row cache's hits come from :mod:`tridsa.sw.row_cache` (the tags see the lookups in index order).
Every FIFO is an Amaranth ``SyncFIFOBuffered``: an item written in cycle ``t`` is readable at ``t + 2``
(``t + 1`` in a one-entry FIFO, a single register).
The engine has the memory port to itself (no GEMM beside it) and the memory never stalls (every chip's).
"""
from __future__ import annotations

from collections import deque
from typing import NamedTuple

from ..spec.config import ceil_div
from ..spec.gather_layout import MEAN_DIVIDE_STEPS, ROWS_AHEAD, line_words

__all__ = ["GatherTiming", "simulate_gather"]


class GatherTiming(NamedTuple):
    """Cycles from a legal GATHER's first check-pass cycle to the last cycle of its main pass (``done``)
    and to the first one (``main``: its checks passed)."""
    done: int
    main: int


def simulate_gather(hits, offsets, row_words: int, out_words: int, mean: bool, weighted: bool,
                    n_indices: int, config) -> GatherTiming:
    """Step the engine from its first check-pass cycle (reads of the check pass and of the offsets issued)
    to the end of its main pass. ``hits``: one bool per pooled index, in order; ``offsets``: the
    ``n_bags + 1`` offsets (legal)."""
    pw = config.mem_width // 4
    latency = config.mem_latency
    offsets = [int(x) for x in offsets]
    hits = [bool(x) for x in hits]
    n_bags = len(offsets) - 1
    off_words = ceil_div(n_bags + 1, pw)
    idx_words = ceil_div(n_indices, pw)
    off_last = offsets[-1]
    main_count = ceil_div(off_last, pw)
    out_total = n_bags * out_words
    OFF, IDX, W, ROWS, WRITER = range(5)
    depth = [config.stream_fifo_depth] * 3 + [ROWS_AHEAD * line_words(config)]
    # readers: words left to request of the current command, credits (issued, not popped), response
    # FIFO (inner level, output register valid)
    remaining, credits, inner, head = [0] * 4, [0] * 4, [0] * 4, [False] * 4
    skid = [0] * 5                   # requests in each requester's skid buffer (0..2)
    last = 4                         # the arbiter's last grant
    arrivals = deque()               # (cycle, reader) of every read response
    pending = {"off_check": True, "idx_check": idx_words != 0, "off": True, "idx": True, "w": weighted}
    k_off = k_idx = 0                # check pass: words checked
    main = False
    main_at = 0
    split = {OFF: [0, 0, n_bags + 1], IDX: [0, 0, off_last], W: [0, 0, off_last]}   # lane, index, per block
    off_item = look = 0              # offsets taken, lookups done
    primed, prev, bags, rows_left_reg = False, 0, 0, 0
    q_depth = config.prefetch_depth
    q_inner = deque()                # entry FIFO: inner items and output register (kind, last)
    q_head = None                    # kind 0: a miss, 1: a hit, 2: an empty bag
    wi = 0                           # pooling unit: word of the head entry, stage 2, output buffer
    s2_valid = s2_final = False
    out_busy = False
    j = 0
    dividing, step = False, 0
    written = 0
    # far more cycles than any legal GATHER takes: beyond them the mirror is stuck (a bug)
    limit = 1000 + (latency + 4) * (2 * off_words + idx_words + 2 * main_count + off_last * row_words
                                     + n_bags * (1 + out_words * (MEAN_DIVIDE_STEPS + 2)))
    t = 0
    while True:
        # ================= combinational: every signal from this cycle's registers =================
        wrote = [False] * 4
        while arrivals and arrivals[0][0] == t:
            wrote[arrivals.popleft()[1]] = True
        grant = -1
        for k in range(1, 6):
            if skid[(last + k) % 5]:
                grant = (last + k) % 5
                break
        issue = [remaining[r] != 0 and credits[r] < depth[r] and skid[r] < 2 for r in range(4)]
        cmd_ready = [remaining[r] == 0 or (remaining[r] == 1 and issue[r]) for r in range(4)]
        new_cmd = [0] * 4
        offsets_good = k_off == off_words
        accepted = []
        if pending["off_check"]:
            if cmd_ready[OFF]:
                new_cmd[OFF] = off_words
                accepted.append("off_check")
        elif pending["off"] and cmd_ready[OFF]:
            new_cmd[OFF] = off_words
            accepted.append("off")
        if pending["idx_check"]:
            if cmd_ready[IDX]:
                new_cmd[IDX] = idx_words
                accepted.append("idx_check")
        elif pending["idx"] and offsets_good and off_last and cmd_ready[IDX]:
            new_cmd[IDX] = main_count
            accepted.append("idx")
        if pending["w"] and offsets_good and off_last and cmd_ready[W]:
            new_cmd[W] = main_count
            accepted.append("w")
        pops = [False] * 4
        to_main = finish = False
        if not main:                 # DATA_CHECK: a word of offsets and of indices per cycle
            to_main = k_off == off_words and k_idx == idx_words
            check_off = k_off != off_words and head[OFF]
            check_idx = k_idx != idx_words and head[IDX]
            pops[OFF], pops[IDX] = check_off, check_idx
        out_valid = out_busy and (not mean or step == MEAN_DIVIDE_STEPS)
        out_fire = out_valid and skid[WRITER] < 2
        last_out = out_fire and j == out_words - 1
        out_free = not out_busy or last_out
        hold = s2_valid and s2_final and not out_free
        handover = s2_valid and s2_final and out_free
        start_div = out_busy and mean and not dividing and step == 0
        push = None
        issue_word = entry_done = False
        if main:
            finish = (written == out_total and primed and bags == n_bags and rows_left_reg == 0 and not out_busy
                      and not s2_valid and not any(remaining) and not any(credits) and not any(pending.values())
                      and not any(skid))
            # ---- index queue: one lookup per cycle, an offset per bag ----------------------------
            # a one-entry FIFO is a single register (written only while empty, readable the next cycle)
            q_w_rdy = q_head is None if q_depth == 1 else len(q_inner) != q_depth - 1
            off_take = idx_take = False
            next_rows_left = rows_left_reg
            if not primed:
                if head[OFF]:
                    off_take = True
                    primed, prev = True, offsets[off_item]
            else:
                length = (offsets[off_item] if head[OFF] else 0) - prev
                offset_in = bags != n_bags and head[OFF]
                starting = offset_in and rows_left_reg == 0
                rows_left = length if starting else rows_left_reg
                fire = False
                if rows_left != 0 and head[IDX] and (not weighted or head[W]) and q_w_rdy:
                    hit = hits[look]
                    if hit or cmd_ready[ROWS]:
                        fire = True
                        if not hit:
                            new_cmd[ROWS] = row_words
                chain = offset_in and not starting and rows_left_reg == 1 and fire and length != 0
                if fire:
                    idx_take = True
                    push = (1 if hits[look] else 0, rows_left == 1)
                    next_rows_left = rows_left - 1
                if (starting and (length != 0 or q_w_rdy)) or chain:
                    off_take = True
                    prev = offsets[off_item]
                    bags += 1
                    if starting and length == 0:
                        push = (2, True)
                    elif not fire or chain:
                        next_rows_left = length
            rows_left_reg = next_rows_left
            for r, take in ((OFF, off_take), (IDX, idx_take), (W, idx_take and weighted)):
                if take:
                    s = split[r]
                    block_end = s[1] == s[2] - 1
                    pops[r] = s[0] == pw - 1 or block_end
                    s[1] = 0 if block_end else s[1] + 1
                    s[0] = 0 if pops[r] else s[0] + 1
            off_item += off_take
            look += idx_take
            # ---- pooling unit stage 1: a word of the head entry -----------------------------------
            if q_head is not None and not hold:
                kind, is_last = q_head
                if kind != 0 or head[ROWS]:
                    issue_word = True
                    last_word = wi == row_words - 1
                    final = kind == 2 or (is_last and last_word)
                    pops[ROWS] = kind == 0
                    entry_done = kind == 2 or last_word
        # ================= registers ====================================================================
        if not hold:
            s2_valid = issue_word
            if issue_word:
                s2_final = final
        if issue_word:
            wi = 0 if entry_done else wi + 1
        if out_fire:
            written += 1
            j = 0 if last_out else j + 1
            if last_out:
                out_busy = False
        if handover:
            out_busy = True
        dividing_next = dividing or start_div
        if dividing:
            step += 1
            if step == MEAN_DIVIDE_STEPS:
                dividing_next = False
        if out_fire and mean:
            step = 0
        dividing = dividing_next
        if main:
            if q_inner and (q_head is None or entry_done):
                q_head = q_inner.popleft()
            elif entry_done:
                q_head = None
            if push is not None and q_depth == 1:
                q_head = push
            elif push is not None:
                q_inner.append(push)
        if not main:
            k_off += pops[OFF]
            k_idx += pops[IDX]
        for r in range(4):
            inner_read = inner[r] != 0 and (not head[r] or pops[r])
            inner[r] += wrote[r] - inner_read
            if inner_read:
                head[r] = True
            elif pops[r]:
                head[r] = False
            credits[r] += issue[r] - pops[r]
            if new_cmd[r]:
                remaining[r] = new_cmd[r]
            elif issue[r]:
                remaining[r] -= 1
            skid[r] += issue[r]
        skid[WRITER] += out_fire
        if grant >= 0:
            skid[grant] -= 1
            last = grant
            if grant < 4:
                arrivals.append((t + latency, grant))
        for name in accepted:
            pending[name] = False
        if to_main and not off_last:
            pending["idx"] = pending["w"] = False
        if finish:
            return GatherTiming(t, main_at)
        t += 1
        if to_main:
            main, main_at = True, t
        if t > limit:
            raise RuntimeError(f"the gather timing mirror did not finish in {limit} cycles")
