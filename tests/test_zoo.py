"""The model zoo: the published sizes of every network, and every layer run and checked on small inputs."""
import json

import numpy as np
import pytest

from conftest import SMALL
from tridsa import Accelerator
from tridsa.sw.conv import conv_output_size
from tridsa.sw.zoo import MODELS, run_model
from tridsa.sw.zoo.dlrm import CRITEO_ROWS, DIM, table_rows


class ShapesOnly:
    """Stands in for an Accelerator: checks nothing, returns zeros of the right shape, counts MACs."""

    def __init__(self, config):
        self.config = config
        self.backend = type("B", (), {"name": "shapes"})()

    def _done(self, macs, out):
        from tridsa.sw.driver import RunStats
        self.last_run = RunStats("shapes", 1, 1, macs, 64)
        return out

    def matmul(self, a, b, bias=None, requant=None, relu=False, precision="int8", out_dtype=None):
        return self._done(a.shape[0] * a.shape[1] * b.shape[1], np.zeros((a.shape[0], b.shape[1]), np.int32))

    def matmul_batch(self, a, b, *args):
        return self._done(a.shape[0] * a.shape[1] * a.shape[2] * b.shape[2],
                          np.zeros((a.shape[0], a.shape[1], b.shape[2]), np.int32))

    def conv2d(self, x, w, bias, stride, padding, dilation, groups, *args):
        oh, ow = (conv_output_size(s, k, stride, padding, dilation) for s, k in zip(x.shape[2:], w.shape[2:]))
        return self._done(x.shape[0] * w.shape[0] * oh * ow * w[0].size, np.zeros((x.shape[0], w.shape[0], oh, ow), np.int8))

    def embedding_bags(self, tables, indices, offsets, out_shift=None):
        dtype = np.int32 if out_shift is None else tables[0].dtype
        return self._done(0, np.zeros((len(offsets[0]), len(tables), tables[0].shape[1]), dtype))


@pytest.mark.parametrize("name, macs", [("resnet50", 4.09e9), ("mobilenetv2", 300.8e6), ("bert", 931.1e6)])
def test_published_sizes(name, macs):
    """MACs at full size: ResNet-50 4.09 G and MobileNetV2 300 M (the papers' multiply-adds at 224 x 224),
    a BERT-base layer at sequence 128: 128 * 768 * (4 * 768 + 2 * 3072) + 2 * 12 * 128 * 128 * 64."""
    layers = run_model(name, ShapesOnly(SMALL))
    assert abs(sum(layer.macs for layer in layers) - macs) / macs < 0.002
    if name == "bert":
        assert sum(layer.macs for layer in layers) == 128 * 768 * (4 * 768 + 2 * 3072) + 2 * 12 * 128 * 128 * 64


def test_lstm_and_dlrm_shapes():
    layers = run_model("lstm", ShapesOnly(SMALL))
    assert len(layers) == 2 * (1 + 25)
    assert sum(layer.macs for layer in layers) == (1 + 64) * 25 * 2 * 1024 * 4096
    layers = run_model("dlrm", ShapesOnly(SMALL), table_bytes=1 << 24)
    assert [layer.shape for layer in layers if layer.op == "matmul"] == [
        "128x13x512", "128x512x256", "128x256x128", "128x479x1024", "128x1024x1024", "128x1024x512", "128x512x256",
        "128x256x1"]
    rows = table_rows(1 << 24)
    assert sum(rows) * DIM <= 1 << 24 and all(r <= c for r, c in zip(rows, CRITEO_ROWS))
    assert table_rows(1 << 40) == list(CRITEO_ROWS)


@pytest.mark.parametrize("name, options", [("resnet50", dict(size=32)), ("mobilenetv2", dict(size=32)),
                                           ("bert", dict(seq=16)), ("lstm", dict(batches=(1, 3), steps=2)),
                                           ("dlrm", dict(batch=4, table_bytes=1 << 20))])
def test_every_layer_runs_split_and_checked(name, options):
    """Each model on small inputs: a 16 KiB-memory Config splits most layers over Programs, and every layer
    equals the unsplit run on a roomy Config bit for bit (the Recorder's golden check)."""
    tiny = SMALL.replace(mem_depth=1024)
    layers = run_model(name, Accelerator("golden", tiny), Accelerator("golden", SMALL.replace(mem_depth=1 << 16)),
                       **options)
    assert layers and all(layer.cycles > 0 for layer in layers)
    assert any(layer.programs > 1 for layer in layers)


def test_bench_zoo_writes_report(tmp_path, capsys):
    from tridsa.sw.cli import main
    code = main(["bench", "zoo", "--backend", "golden", "--models", "bert", "--out", str(tmp_path)])
    assert code == 0
    report = json.loads((tmp_path / "zoo.json").read_text())
    assert set(report["models"]) == {"bert"} and report["models"]["bert"]["cycles"] > 0 and report["complete"]
    assert report["cycles_from"].startswith("cycle model") and report["targets"]["bert"]["met"]
    assert (tmp_path / "zoo_roofline_golden.png").stat().st_size > 0
    table = (tmp_path / "zoo.md").read_text()
    assert "| bert |" in table and "Gemmini ResNet-50" in table and "tridsa bench zoo --backend golden" in table
    assert set(MODELS) == {"resnet50", "mobilenetv2", "bert", "lstm", "dlrm"}
