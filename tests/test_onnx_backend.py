"""onnx's own backend node tests (onnx.backend.test.BackendTest) on the golden and Verilator backends.

The cases are generated in memory by onnx; every case of the included families must pass. Excluded,
with the reason:

* none of the included families is excluded. Cases of the families that are not int8/uint8
  (``test_quantizelinear_e4m3fn``, ``_int4``, ``_uint16``, ... and their DequantizeLinear twins) are
  not in the brief; they run on the host (onnx's ReferenceEvaluator) and pass too, so they stay in.

On Verilator the same cases run; those whose node the accelerator runs (QLinearMatMul, QLinearConv,
MatMulInteger, ConvInteger) go through the shared small-Config simulator, about a second each once it is
built; Gather, QuantizeLinear and DequantizeLinear are host nodes.
"""
import re
import unittest
import warnings

import numpy as np
import onnx.backend.test
import onnx.backend.test.case.node
import pytest
from onnx import numpy_helper

from tridsa.sw.onnx_backend import backend

from conftest import SMALL

#: The families the brief asks for.
FAMILIES = r"test_(qlinearmatmul_.*|qlinearconv.*|matmulinteger.*|convinteger_.*|quantizelinear.*|dequantizelinear.*|gather_.*)"
#: The families whose node the GEMM engine runs.
OFFLOADED = r"test_(qlinearmatmul_.*|qlinearconv.*|matmulinteger.*|convinteger_.*)"


def _cases(name, pattern):
    """The ``_cpu`` test methods of onnx's BackendTest for backend ``name`` matching ``pattern``."""
    with warnings.catch_warnings():           # onnx's case generators warn while building some cases
        warnings.simplefilter("ignore")
        suite = onnx.backend.test.BackendTest(backend(name, config=SMALL), __name__)
    suite.include(f"^{pattern}_cpu$")
    tests = {}
    for case in suite.test_cases.values():
        for method in unittest.defaultTestLoader.getTestCaseNames(case):
            if re.match(f"^{pattern}_cpu$", method):
                tests[method] = case(method)
    return tests


_GOLDEN = _cases("golden", FAMILIES)
_VERILATOR = _cases("verilator", FAMILIES)


def _run(test):
    result = unittest.TestResult()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        test.run(result)
    problems = result.errors + result.failures
    assert not problems, problems[0][1]
    assert not result.skipped, result.skipped[0][1]


def test_families_are_all_there():
    """Every family of the brief has cases (a renamed onnx case would silently vanish otherwise)."""
    names = set(_GOLDEN)
    for family in ("qlinearmatmul_2D", "qlinearmatmul_3D", "qlinearconv", "matmulinteger", "convinteger_with",
                   "quantizelinear_cpu", "quantizelinear_axis", "dequantizelinear_cpu", "dequantizelinear_axis",
                   "gather_0", "gather_negative_indices"):
        assert any(n.startswith(f"test_{family}") for n in names), family
    assert set(_VERILATOR) == names


def _exact_cases():
    """onnx's node cases whose node runs on the GEMM engine, as (name, model, data_sets)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cases = onnx.backend.test.case.node.collect_testcases(None)
    return [c for c in cases if re.match(f"^{OFFLOADED}$", c.name)]


@pytest.mark.parametrize("name", ["golden", pytest.param("verilator", marks=pytest.mark.slow)])
def test_offloaded_cases_are_bit_exact(name):
    """BackendTest compares with rtol=1e-3 (an int32 output could be off by one and pass): here every
    output of the offloaded cases equals onnx's expected output exactly, and ran on the GEMM engine."""
    cases = _exact_cases()
    assert len(cases) == 12
    be = backend(name, config=SMALL)
    for case in cases:
        rep = be.prepare(case.model)
        for inputs, expected in case.data_sets:
            outputs = rep.run([numpy_helper.to_array(v) if hasattr(v, "raw_data") else v for v in inputs])
            for got, want in zip(outputs, expected):
                want = numpy_helper.to_array(want) if hasattr(want, "raw_data") else np.asarray(want)
                assert got.dtype == want.dtype and np.array_equal(got, want), case.name
        assert [r.engine for r in rep.records] == ["gemm"], case.name


@pytest.mark.parametrize("name", sorted(_GOLDEN))
def test_onnx_node_golden(name):
    _run(_GOLDEN[name])


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(_VERILATOR))
def test_onnx_node_verilator(name):
    _run(_VERILATOR[name])
