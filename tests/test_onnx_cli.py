"""``tridsa run model.onnx`` and the ONNX part of the demo (torch.onnx export + onnxruntime quantization)."""
import re

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from tridsa import Config

from conftest import SMALL
from test_cli import cli
from test_onnx_ops import qlinear_matmul_model


def test_run_onnx_model(capsys, tmp_path, seed):
    rng = np.random.default_rng(seed)
    model, feeds = qlinear_matmul_model(rng, 6, 10, 5, np.uint8, np.int8, np.uint8, True)
    onnx.save(model, tmp_path / "m.onnx")
    np.save(tmp_path / "a.npy", feeds["a"])
    code, out, err = cli(capsys, "run", str(tmp_path / "m.onnx"), "--input", str(tmp_path / "a.npy"),
                         "--output", str(tmp_path / "y.npy"), "--rows", "4", "--cols", "4")
    assert code == 0, err
    assert "qmm" in out and "gemm" in out and "4x4 array" in out
    (expected,) = ReferenceEvaluator(model).run(None, feeds)
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), expected)


def test_run_onnx_errors(capsys, tmp_path):
    node = helper.make_node("QLinearMatMul", ["a", "b"], ["y"], name="broken_node")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("a", TensorProto.UINT8, [2, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.UINT8, [2, 2])],
                              [numpy_helper.from_array(np.zeros((2, 2), np.uint8), "b")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)]), tmp_path / "bad.onnx")
    np.save(tmp_path / "a.npy", np.zeros((2, 2), np.uint8))
    code, _, err = cli(capsys, "run", str(tmp_path / "bad.onnx"), "--input", str(tmp_path / "a.npy"))
    assert code == 2 and "broken_node" in err and err.count("\n") == 1
    float_mm = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["y"], name="float_mm")], "g",
                                 [helper.make_tensor_value_info("a", TensorProto.FLOAT, [2, 2])],
                                 [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 2])],
                                 [numpy_helper.from_array(np.ones((2, 2), np.float32), "b")])
    onnx.save(helper.make_model(float_mm, opset_imports=[helper.make_opsetid("", 21)]), tmp_path / "f.onnx")
    np.save(tmp_path / "f.npy", np.ones((2, 2), np.float32))
    code, _, err = cli(capsys, "run", str(tmp_path / "f.onnx"), "--input", str(tmp_path / "f.npy"), "--strict")
    assert code == 1 and "float_mm" in err
    code, _, err = cli(capsys, "run", str(tmp_path / "f.onnx"))
    assert code == 2 and "give one --input" in err


@pytest.mark.parametrize("fmt", ["QOperator", "QDQ"])
def test_demo_cnn_against_onnxruntime(tmp_path, fmt):
    """The repo's CNN through torch.onnx and quantize_static: tridsa's logits equal onnxruntime's but for
    rare one-step differences, same accuracy as the float model within a point."""
    pytest.importorskip("torch", reason="the ONNX demo exports with torch (a test extra)")
    pytest.importorskip("onnxruntime", reason="the ONNX demo quantizes with onnxruntime (a test extra)")
    from tridsa.sw.onnx_demo import compare
    c = compare("cnn", fmt, "golden", Config(), tmp_path)
    assert c.equal >= 0.99 * c.outputs and c.max_steps <= 1
    assert abs(c.accuracy_tridsa - c.accuracy_float) <= 0.01
    assert [r.engine for r in c.records].count("gemm") == 5          # four convolutions and the classifier


def test_demo_says_what_is_missing(capsys, monkeypatch):
    from tridsa.sw import onnx_demo
    monkeypatch.setattr(onnx_demo, "NEEDS", {"no_such_module_xyz": "no-such-package"})
    assert onnx_demo.run("golden", Config(), None) == {}
    assert "skipped: needs no-such-package (pip install no-such-package" in capsys.readouterr().out


@pytest.mark.slow
def test_run_onnx_model_verilator_check(capsys, tmp_path, small_config_file, seed):
    rng = np.random.default_rng(seed)
    model, feeds = qlinear_matmul_model(rng, 5, 12, 6, np.int8, np.int8, np.int8, True)
    onnx.save(model, tmp_path / "m.onnx")
    np.save(tmp_path / "a.npy", feeds["a"])
    code, out, err = cli(capsys, "run", str(tmp_path / "m.onnx"), "--input", str(tmp_path / "a.npy"),
                         "--backend", "verilator", "--check", "--config", str(small_config_file))
    assert code == 0, err
    assert "check: outputs equal the golden backend's bit for bit" in out
    assert re.search(r"qmm\s+QLinearMatMul\s+gemm\s+\d+", out)            # cycles measured on the gateware


@pytest.mark.slow
def test_demo_cnn_on_verilator_matches_golden(tmp_path, monkeypatch):
    """The demo's gateware run (here the first digits, as on the slow simulators) is bit-exact with golden
    and reports cycles and utilization per offloaded node."""
    pytest.importorskip("torch", reason="the ONNX demo exports with torch (a test extra)")
    pytest.importorskip("onnxruntime", reason="the ONNX demo quantizes with onnxruntime (a test extra)")
    from tridsa.sw import onnx_demo
    monkeypatch.setattr(onnx_demo, "FULL_SPLIT_BACKENDS", ("golden",))
    c = onnx_demo.compare("cnn", "QOperator", "verilator", SMALL, tmp_path)
    assert c.backend_digits == onnx_demo.SLOW_BACKEND_SAMPLES and c.digits == 540
    gemm = [r for r in c.records if r.engine == "gemm"]
    assert len(gemm) == 5 and all(r.cycles > 0 and 0 < r.utilization <= 1 for r in gemm)


def test_bench_onnx_quick(capsys, tmp_path):
    """``tridsa bench onnx --quick`` (CNN only, golden) prints its table naming its command and writes JSON."""
    pytest.importorskip("torch", reason="the ONNX bench exports with torch (a test extra)")
    pytest.importorskip("onnxruntime", reason="the ONNX bench quantizes with onnxruntime (a test extra)")
    code, out, err = cli(capsys, "bench", "onnx", "--backend", "golden", "--quick", "--out", str(tmp_path))
    assert code == 0, err
    assert "| cnn | QOperator |" in out and "| cnn | QDQ |" in out
    assert "written by `tridsa bench onnx --backend golden --quick`" in out
    assert (tmp_path / "onnx.json").is_file()
