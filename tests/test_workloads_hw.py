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
from tridsa.sw.profile import CheckedAccelerator

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
