"""Real quantized layers (CNN, Transformer, LSTM, DLRM) driven into the Verilator and Icarus models.

Every offloaded layer of a forward pass runs on the HDL simulation and on the golden model and must
agree bit for bit (CheckedAccelerator raises on the first difference); the model outputs must equal
a pure-golden forward pass.
"""
import numpy as np
import pytest

from conftest import SMALL
from tridsa.sw import workloads
from tridsa.sw.driver import Accelerator
from tridsa.sw.profile import CheckedAccelerator, Mismatch
from tridsa.sw.requant import Requant

_checked = {}


def checked(backend):
    if backend not in _checked:
        _checked[backend] = CheckedAccelerator(backend, SMALL)
    return _checked[backend]


def inputs(model):
    if model == "dlrm":
        dense, sparse, _ = workloads.dlrm.synthetic_ctr(4, seed=3)
        return dense, sparse
    x, _ = workloads.digits_test_set()
    return (x[:2],)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["verilator", "icarus"])
@pytest.mark.parametrize("model", ["cnn", "transformer", "lstm", "dlrm"])
def test_real_layers_bit_exact(model, backend):
    net = getattr(workloads, f"load_{model}")("mixed")
    acc = checked(backend)
    acc.workload = model
    first = len(acc.records)
    got = net.forward(acc, *inputs(model))
    expected = net.forward(Accelerator("golden", SMALL), *inputs(model))
    np.testing.assert_array_equal(got, expected)
    records = acc.records[first:]
    assert len(records) >= len(net.layers())     # attention heads and LSTM time steps add calls
    assert all(r.cycles > 0 for r in records)


def test_checked_matmul_batch_is_one_checked_record(seed, monkeypatch):
    """matmul_batch through CheckedAccelerator (Amaranth): golden's result, one record of the whole
    batch's MACs and cycles, and a Mismatch naming the call when the gateware's result differs."""
    rng = np.random.default_rng(seed)
    a, b = rng.integers(-8, 8, (3, 5, 7), dtype=np.int8), rng.integers(-8, 8, (3, 7, 6), dtype=np.int8)
    rq = Requant(rng.integers(1 << 29, 1 << 31, 6), rng.integers(4, 10, 6), zero_point=-2, rounding="half_up")
    acc = checked("amaranth")
    acc.workload = "unit"
    first = len(acc.records)
    got = acc.matmul_batch(a, b, None, rq, precision="int4")
    np.testing.assert_array_equal(got, Accelerator("golden", SMALL).matmul_batch(a, b, None, rq, precision="int4"))
    [record] = acc.records[first:]
    assert (record.op, record.shape, record.macs) == ("matmul_batch", "3x(5x7x6 int4)", 3 * 5 * 7 * 6)
    assert record.cycles > 0 and record.utilization == record.macs / (2 * SMALL.peak_macs_int8 * record.cycles)
    wrong = got.copy()
    wrong[2, 4, 5] ^= 1
    monkeypatch.setattr(acc.gateware, "matmul_batch", lambda *args, **kwargs: wrong)
    with pytest.raises(Mismatch, match=r"unit matmul_batch 3x\(5x7x6 int4\): amaranth differs from golden \(1 el"):
        acc.matmul_batch(a, b, None, rq, precision="int4")
