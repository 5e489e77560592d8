"""DLRM sharded over several accelerators (sw/sharding.py, sw/multichip.py, benchmarks/bench_multichip.py).

The planner and the bag restriction are checked without Ray (row-wise pooled parts against torch's
embedding_bag over the whole table); the sharded step runs on a local 2-CPU Ray (one per session) and
must equal the single-chip forward bit for bit; the all-to-all volume is checked against the byte count
written out by hand for table-wise sharding.
"""
import json

import numpy as np
import pytest
import torch

from conftest import SMALL
from tridsa import Accelerator
from tridsa.sw import multichip, sharding
from tridsa.sw.workloads import dlrm


# ---- planner ---------------------------------------------------------------------------------------
def _lookups(rows, seed, n=400):
    rng = np.random.default_rng(seed)
    return [np.bincount(rng.zipf(1.5, n) % r, minlength=r).astype(float) for r in rows]


def _covers_every_row_once(plan):
    for t, rows in enumerate(plan.table_rows):
        spans = sorted((s.start, s.end) for s in plan.shards if s.table == t)
        assert spans[0][0] == 0 and spans[-1][1] == rows
        assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))


@pytest.mark.parametrize("chips", [1, 2, 3, 8])
@pytest.mark.parametrize("strategy", sharding.STRATEGIES)
def test_plan_covers_every_row_once(strategy, chips, seed):
    rows = (200, 100, 50, 20)
    plan = sharding.plan(rows, (8, 8, 8, 8), _lookups(rows, seed), chips, strategy)
    _covers_every_row_once(plan)
    assert all(0 <= s.chip < chips and s.rows > 0 for s in plan.shards)
    per_table = [len({s.chip for s in plan.shards if s.table == t}) for t in range(len(rows))]
    if strategy == "table":
        assert per_table == [1] * len(rows)
    if strategy == "row":
        assert per_table == [min(chips, r) for r in rows]


def test_auto_plan_splits_the_heavy_table_and_balances():
    """One table holds most bytes and lookups: table-wise leaves one chip with it, auto cuts it."""
    rows = (1000, 10, 10, 10)
    lookups = [np.ones(r) for r in rows]
    table = sharding.plan(rows, (8,) * 4, lookups, 4, "table")
    auto = sharding.plan(rows, (8,) * 4, lookups, 4, "auto")
    assert len([s for s in auto.shards if s.table == 0]) > 1
    assert max(auto.load) < 0.7 * max(table.load)
    assert max(auto.chip_bytes()) < max(table.chip_bytes())


def test_plan_rejects_bad_input():
    with pytest.raises(ValueError, match="chips"):
        sharding.plan((10,), (8,), [np.ones(10)], 0)
    with pytest.raises(ValueError, match="strategy"):
        sharding.plan((10,), (8,), [np.ones(10)], 2, "diagonal")


def test_row_wise_parts_sum_to_torch_embedding_bag(seed):
    rng = np.random.default_rng(seed)
    table = rng.integers(-128, 128, (37, 5)).astype(np.int8)
    idx = rng.integers(0, 37, 60)
    off = np.sort(rng.integers(0, 61, 9))
    off[0] = 0
    want = torch.nn.functional.embedding_bag(torch.tensor(idx), torch.tensor(table, dtype=torch.float64),
                                             torch.tensor(off), mode="sum").numpy().astype(np.int32)  # exact
    got = np.zeros_like(want)
    for start, end in ((0, 5), (5, 6), (6, 30), (30, 37)):
        local, local_off = multichip.local_bags(idx, off, start, end)
        got += Accelerator("golden").embedding_bag(table[start:end], local, local_off)
    assert np.array_equal(got, want)


# ---- the sharded step on Ray ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def step_inputs():
    model = dlrm.load_dlrm("int8")
    dense, sparse, _ = dlrm.synthetic_ctr(24, 5)
    return model, dense, sparse, model.forward(Accelerator("golden"), dense, sparse)


@pytest.mark.parametrize("chips, strategy", [(3, "table"), (2, "row")])
def test_sharded_step_is_bit_exact(local_ray, step_inputs, chips, strategy):
    model, dense, sparse, want = step_inputs
    result = multichip.run_sharded(model, dense, sparse, chips, "golden", strategy=strategy)
    assert np.array_equal(result.logits, want)
    assert len(result.chips) == chips and sum(c["samples"] for c in result.chips) == len(dense)
    assert sum(c["embedding_bytes"] for c in result.chips) == sum(t.nbytes for t in model.embedding_tables())
    assert sum(c["lookups"] for c in result.chips) == sum(len(i) for i, _ in sparse)
    if strategy == "table":             # each chip sends B_d x 8 dims x 4 bytes per table to every other chip
        samples = [c["samples"] for c in result.chips]
        tables = [len({s.table for s in result.plan.on_chip(c)}) for c in range(chips)]
        assert result.all_to_all_bytes == sum(tables[c] * (len(dense) - samples[c]) * 32 for c in range(chips))


def test_more_chips_than_samples_is_an_error(local_ray, step_inputs):
    model, dense, sparse, _ = step_inputs
    with pytest.raises(ValueError, match="at least one sample"):
        multichip.run_sharded(model, dense[:2], [(i, o[:2]) for i, o in sparse], 3)


def test_bench_multichip_writes_json(local_ray, tmp_path, capsys):
    from tridsa.sw.cli import main
    assert main(["bench", "multichip", "--chips", "2", "--backend", "golden", "--batch", "16",
                 "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "multichip.json").read_text())
    assert report["bit_exact"] is True and report["chips"] == 2 and len(report["per_chip"]) == 2
    assert report["all_to_all_bytes"] == sum(map(sum, report["all_to_all_matrix"])) > 0
    assert [p["chips"] for p in report["scaling"]["points"]] == [1, 2, 4, 8, 16]     # batch 16
    assert all(c["cycles"] == c["gather_cycles"] + c["mlp_cycles"] > 0 for c in report["per_chip"])  # cycle model
    assert (tmp_path / "multichip_scaling.png").stat().st_size > 0
    assert "bit-exact with one chip: yes" in capsys.readouterr().out


@pytest.mark.slow
def test_sharded_step_on_verilator_counts_cycles(local_ray, tmp_path):
    """The gateware on two chips (two Verilator models, one per actor): bit-exact, and every chip reports
    its gather and MLP cycles from the RTL counters."""
    from benchmarks.bench_multichip import run
    report = run(SMALL, "verilator", tmp_path, chips=2, batch=4)
    assert report["bit_exact"] is True
    assert all(c["mlp_cycles"] > 0 and c["cycles"] >= c["mlp_cycles"] for c in report["per_chip"])
    assert report["scaling"]["points"][1]["step_cycles"] > 0
