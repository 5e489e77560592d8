# amaranth: UnusedElaboratable=no
"""conv2d lowered to GEMMs (banded im2col) vs a direct NumPy convolution, every lowering, every backend."""
import numpy as np
import pytest

from conftest import SMALL, accelerator, backend_params
from tridsa import Accelerator, Config, Requant
from tridsa.sw.builder import ProgramBuilder
from tridsa.sw.conv import ConvShape, Lowering, choose_lowering, conv2d_gemms
from tridsa.sw.cycle_model import estimate_gemm_cycles, gemm_fixed_cycles
from tridsa.sw.gemm_ops import emit_gemm_batch
from tridsa.sw.requant import requantize
from tridsa.sw.tiling import run_gemm


def run_conv(acc, *args, lowering=None):
    """conv2d_gemms(acc.config, *args, lowering) run on ``acc``: ``(y, programs run, macs)``."""
    jobs, finish, macs = conv2d_gemms(acc.config, *args, lowering)
    results = [run_gemm(acc.config, acc.run, job) for job in jobs]
    return finish([values for values, _ in results]), sum(len(runs) for _, runs in results), macs


def direct_conv(x, w, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1):
    """Independent reference: explicit loops over output pixels, exact integer sums."""
    n, cin, h, wd = x.shape
    cout, cin_g, kh, kw = w.shape
    xp = np.pad(x.astype(np.int64), ((0, 0), (0, 0), (padding[0],) * 2, (padding[1],) * 2))
    oh = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (wd + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    out = np.zeros((n, cout, oh, ow), np.int64)
    cout_g = cout // groups
    for o in range(cout):
        g = o // cout_g
        for i in range(oh):
            for j in range(ow):
                patch = xp[:, g * cin_g:(g + 1) * cin_g,
                           i * stride[0]:i * stride[0] + dilation[0] * (kh - 1) + 1:dilation[0],
                           j * stride[1]:j * stride[1] + dilation[1] * (kw - 1) + 1:dilation[1]]
                out[:, o, i, j] = np.einsum("nchw,chw->n", patch, w[o].astype(np.int64))
    return out


CASES = [  # (x shape, w shape, stride, padding, dilation, groups)
    ((1, 3, 7, 6), (5, 3, 3, 3), 1, 1, 1, 1),
    ((2, 4, 9, 9), (6, 4, 3, 3), 2, 0, 1, 1),
    ((1, 6, 8, 8), (6, 1, 3, 3), 1, 1, 1, 6),       # depthwise
    ((2, 8, 6, 6), (16, 1, 3, 3), 2, 1, 1, 8),      # depthwise with channel multiplier 2
    ((1, 4, 10, 10), (4, 2, 3, 3), 1, 2, 2, 2),     # grouped, dilated
    ((3, 5, 5, 5), (7, 5, 1, 1), 1, 0, 1, 1),       # 1x1
    ((1, 2, 6, 9), (3, 2, 2, 4), (1, 2), (1, 0), (2, 1), 1),
]


def _pair(v):
    return v if isinstance(v, tuple) else (v, v)


@pytest.mark.parametrize("xs, ws, stride, padding, dilation, groups", CASES)
@pytest.mark.parametrize("precision", ["int8", "int4"])
def test_golden_conv_matches_direct(xs, ws, stride, padding, dilation, groups, precision, seed):
    rng = np.random.default_rng(seed)
    lo, hi = (-128, 128) if precision == "int8" else (-8, 8)
    x = rng.integers(lo, hi, xs).astype(np.int8)
    w = rng.integers(lo, hi, ws).astype(np.int8)
    y = accelerator("golden").conv2d(x, w, stride=stride, padding=padding, dilation=dilation, groups=groups,
                                     precision=precision)
    np.testing.assert_array_equal(y, direct_conv(x, w, _pair(stride), _pair(padding), _pair(dilation), groups))


def test_golden_conv_requant_per_channel(seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (2, 4, 6, 6)).astype(np.uint8)
    w = rng.integers(-128, 128, (8, 4, 3, 3)).astype(np.int8)
    bias = rng.integers(-2000, 2000, 8)
    rq = Requant.from_scale(rng.uniform(0.001, 0.01, 8), zero_point=5, rounding="tflite")
    y = accelerator("golden").conv2d(x, w, bias=bias, padding=1, requant=rq, relu=True)
    acc = direct_conv(x, w, padding=(1, 1)).transpose(0, 2, 3, 1)
    expected = requantize(acc, bias, rq, True, "int8").transpose(0, 3, 1, 2)
    np.testing.assert_array_equal(y, expected)


@pytest.mark.parametrize("backend", backend_params(("amaranth", "verilator", "icarus")))
def test_conv_every_backend(backend, seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, (1, 4, 5, 5)).astype(np.int8)
    w = rng.integers(-128, 128, (4, 1, 3, 3)).astype(np.int8)     # depthwise
    w2 = rng.integers(-8, 8, (6, 4, 3, 3)).astype(np.int8)
    acc = accelerator(backend)
    np.testing.assert_array_equal(acc.conv2d(x, w, padding=1, groups=4), direct_conv(x, w, padding=(1, 1), groups=4))
    x4 = (x // 16).astype(np.int8)
    np.testing.assert_array_equal(acc.conv2d(x4, w2, stride=2, precision="int4"), direct_conv(x4, w2, stride=(2, 2)))
    # int4 depthwise in 2x2 bands, 2 channels per GEMM, per-channel requant and ReLU
    w4 = (w // 16).astype(np.int8)
    bias = rng.integers(-100, 100, 4)
    rq = Requant.from_scale(rng.uniform(0.01, 0.1, 4), zero_point=-2, rounding="half_up")
    y, _, _ = run_conv(acc, x4, w4, bias, 1, 1, 1, 4, rq, True, "int4", None, lowering=Lowering((2, 2), 2))
    expected = _expected(x4, w4, bias, rq, True, dict(stride=(1, 1), padding=(1, 1), dilation=(1, 1), groups=4))
    np.testing.assert_array_equal(y, expected)


@pytest.mark.parametrize("kwargs, words", [
    ({"groups": 3}, "groups=3"),
    ({"stride": 0}, "stride and dilation must be >= 1"),
    ({"padding": (1, 2, 3)}, "padding must be an int or a pair"),
    ({"bias": np.zeros(3, np.int32)}, "bias must have shape (4,)"),
])
def test_conv_bad_input(kwargs, words):
    x = np.zeros((1, 4, 5, 5), np.int8)
    w = np.zeros((4, 4, 3, 3), np.int8)
    with pytest.raises(ValueError) as info:
        accelerator("golden").conv2d(x, w, **kwargs)
    assert words in str(info.value)


def test_conv_larger_than_memory_splits_programs(seed):
    """A grouped conv whose groups do not fit one Program's memory runs as several Programs."""
    cfg = SMALL.replace(mem_depth=512)
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, (2, 8, 8, 8)).astype(np.int8)
    w = rng.integers(-128, 128, (8, 1, 3, 3)).astype(np.int8)
    for lowering in (None, Lowering((1, 1), 4), Lowering((2, 2), 1)):
        y, programs, _ = run_conv(Accelerator("golden", cfg), x, w, None, 1, 1, 1, 8, None, False, "int8", None,
                                  lowering=lowering)
        assert programs > 1
        np.testing.assert_array_equal(y, direct_conv(x, w, padding=(1, 1), groups=8))


# -- lowerings: every band and packing gives the golden conv --------------------------------------

def _random_conv(rng, precision):
    """A random conv2d problem: shapes, stride 1-2, padding, dilation, groups, operands, requant, relu."""
    groups = int(rng.choice([1, 2, 3, 4, 6]))
    depthwise = rng.random() < 0.5
    cin_g = 1 if depthwise else int(rng.integers(1, 4))
    cout_g = int(rng.choice([1, 1, 2, 3])) if depthwise else int(rng.integers(1, 6))
    kh, kw = (int(v) for v in rng.choice([1, 2, 3], 2, p=[0.2, 0.2, 0.6]))
    stride, dilation = tuple(int(v) for v in rng.integers(1, 3, 2)), tuple(int(v) for v in rng.integers(1, 3, 2))
    padding = tuple(int(v) for v in rng.integers(0, 3, 2))
    size = tuple(int(dilation[i] * (k - 1) + 1 + rng.integers(0, 7)) for i, k in enumerate((kh, kw)))
    lo, hi = (-8, 8) if precision == "int4" else (-128, 128)
    unsigned = precision == "int8" and rng.random() < 0.3
    x = (rng.integers(0, 256, (int(rng.integers(1, 4)), cin_g * groups) + size).astype(np.uint8) if unsigned
         else rng.integers(lo, hi, (int(rng.integers(1, 4)), cin_g * groups) + size).astype(np.int8))
    w = (rng.integers(0, 256, (cout_g * groups, cin_g, kh, kw)).astype(np.uint8) if precision == "int8" and
         rng.random() < 0.2 else rng.integers(lo, hi, (cout_g * groups, cin_g, kh, kw)).astype(np.int8))
    cout = w.shape[0]
    bias = rng.integers(-3000, 3000, cout) if rng.random() < 0.7 else None
    rq = None
    if rng.random() < 0.7:
        scales = rng.uniform(0.0005, 0.02, cout) if rng.random() < 0.7 else float(rng.uniform(0.0005, 0.02))
        rq = Requant.from_scale(scales, zero_point=int(rng.integers(-5, 6)),
                                rounding=str(rng.choice(["tflite", "half_up", "half_even"])))
    relu = bool(rng.random() < 0.5)
    conv = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    return x, w, bias, rq, relu, conv


def _expected(x, w, bias, rq, relu, conv):
    acc = direct_conv(x, w, conv["stride"], conv["padding"], conv["dilation"], conv["groups"])
    return requantize(acc.transpose(0, 2, 3, 1), bias, rq, relu).transpose(0, 3, 1, 2)


def _lowerings(shape):
    """The automatic choice, plain im2col, full block-diagonal packing and a few bands (some ragged)."""
    oh, ow = shape.out_size
    return [None, Lowering((1, 1), 1), Lowering((1, 1), shape.groups), Lowering((2, min(4, ow)), 1),
            Lowering((min(3, oh), 2), 2), Lowering((oh, ow), 1)]


@pytest.mark.parametrize("precision", ["int8", "int4"])
def test_every_lowering_matches_direct_conv(precision, seed):
    """Random convs (stride, padding, dilation, batch, groups, int8/uint8/int4 operands, requant, relu):
    every lowering gives the direct convolution bit for bit."""
    rng = np.random.default_rng(seed)
    cfg = SMALL.replace(mem_depth=1 << 14)
    acc = Accelerator("golden", cfg)
    for _ in range(25):
        x, w, bias, rq, relu, conv = _random_conv(rng, precision)
        expected = _expected(x, w, bias, rq, relu, conv)
        shape = ConvShape(x.shape[0], x.shape[1], x.shape[2:], w.shape[0], w.shape[2:], conv["stride"],
                          conv["padding"], conv["dilation"], conv["groups"])
        for lowering in _lowerings(shape):
            y, _, macs = run_conv(acc, x, w, bias, conv["stride"], conv["padding"], conv["dilation"],
                                  conv["groups"], rq, relu, precision, None, lowering=lowering)
            assert y.dtype == expected.dtype
            np.testing.assert_array_equal(y, expected, err_msg=f"{lowering} {conv} x{x.shape} w{w.shape}")
            assert macs == x.shape[0] * w.shape[0] * y.shape[2] * y.shape[3] * w[0].size


def test_depthwise_uses_bands_and_counts_useful_macs(seed):
    """The CNN's depthwise layer (32 channels, 6x6 -> 4x4, batch 8) on the default 8x8 array: the
    cost model prefers output bands to the block-diagonal im2col, and MACs are the useful ones."""
    cfg = Config()
    shape = ConvShape(8, 32, (6, 6), 32, (3, 3), (1, 1), (0, 0), (1, 1), 32)
    for precision in ("int8", "int4"):
        chosen = choose_lowering(cfg, shape, precision)
        assert chosen.band != (1, 1)

        def cycles(lowering):
            return sum(estimate_gemm_cycles(cfg, m, k, n, precision == "int4", batch=count)
                       for (m, k, n), count in lowering.gemm_batches(shape))
        assert cycles(chosen) < cycles(Lowering((1, 1), cfg.cols))
        assert all(cycles(chosen) <= cycles(Lowering(band, pack)) for band in ((1, 1), (2, 4), (4, 4), (1, 4))
                   for pack in (1, 2, 4))
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, (8, 32, 6, 6)).astype(np.int8)
    w = rng.integers(-128, 128, (32, 1, 3, 3)).astype(np.int8)
    acc = Accelerator("golden", cfg)
    np.testing.assert_array_equal(acc.conv2d(x, w, groups=32), direct_conv(x, w, groups=32))
    assert acc.last_run.macs == 8 * 32 * 4 * 4 * 9
    assert acc.last_run.instructions == 1          # every group's GEMM in one batched instruction


def test_regular_convs_keep_plain_im2col():
    """With at least `cols` output channels per group, bands only lengthen K: plain im2col is chosen."""
    cfg = Config()
    for shape in (ConvShape(8, 16, (10, 10), 32, (3, 3), (2, 2), (0, 0), (1, 1), 1),
                  ConvShape(8, 1, (10, 10), 16, (3, 3), (1, 1), (0, 0), (1, 1), 1)):
        assert choose_lowering(cfg, shape, "int8") == Lowering((1, 1), 1)


def test_cycle_model_pipeline_depths_are_the_gateware_ones():
    """The cycle model's pipeline depths are those of the PE (spec/gemm_layout.py) and the requant unit
    (Config.requant_stages)."""
    from tridsa.hw.mac_array import ProcessingElement
    from tridsa.hw.requant import RequantUnit
    from tridsa.spec.config import REQUANT_REGISTERED
    from tridsa.spec.gemm_layout import PE_LATENCY
    assert ProcessingElement.latency == PE_LATENCY
    for stages in (0, *REQUANT_REGISTERED):
        cfg = Config(requant_stages=stages)
        assert RequantUnit(cfg.cols, stages=cfg.requant_stages).latency == cfg.requant_latency
        assert gemm_fixed_cycles(cfg) - gemm_fixed_cycles(Config()) == cfg.requant_latency - Config().requant_stages


GEMM_CASES = ((8, 24, 4, "int8", 1), (12, 18, 8, "int4", 1), (4, 5, 3, "int8", 1), (1, 1, 1, "int8", 1),
              (32, 64, 16, "int4", 1), (64, 9, 16, "int8", 1), (16, 24, 8, "int8", 8), (16, 24, 8, "int4", 16),
              (4, 5, 3, "int8", 4), (12, 18, 8, "int4", 3))


@pytest.mark.parametrize("backend", backend_params(("amaranth",)))
@pytest.mark.parametrize("config, cases", [(SMALL, GEMM_CASES), (SMALL.replace(requant_stages=5), GEMM_CASES[::3]),
                                           (SMALL.replace(requant_lanes=1), GEMM_CASES[::3]),
                                           (SMALL.replace(requant_stages=0, requant_lanes=2), GEMM_CASES[::3]),
                                           (SMALL.replace(rows=16, cols=16, mem_width=64), GEMM_CASES[::3]),
                                           (SMALL.replace(row_group=3), GEMM_CASES[::3]),
                                           (SMALL.replace(row_group=1, requant_lanes=2), GEMM_CASES[::3])],
                         ids=["requant12", "requant5", "requant_chunked", "requant_serial", "readout2", "row_groups",
                              "row_groups_chunked"])
def test_cycle_model_matches_gateware(backend, config, cases, seed):
    """estimate_gemm_cycles is within 3 cycles of the gateware (SMALL config, int8 and int4, batched; and
    a few of those with the compact requant pipeline, one requant lane, the serial unit on two lanes, a
    16-row array whose readout has two stages, and arrays with registered links between row groups, whose
    extra cycles a requant unit on fewer lanes hides)."""
    rng = np.random.default_rng(seed)
    acc = accelerator(backend, config)
    for m, k, n, precision, batch in cases:
        lo, hi = (-8, 8) if precision == "int4" else (-128, 128)
        a = rng.integers(lo, hi, (batch, m, k)).astype(np.int8)
        b = rng.integers(lo, hi, (batch, k, n)).astype(np.int8)
        builder = ProgramBuilder(config)
        emit_gemm_batch(builder, a, b, requant=Requant(1 << 20, 24), precision=precision)
        cycles = acc.run(builder.build()).counters["cycles"]
        estimate = estimate_gemm_cycles(config, m, k, n, precision == "int4", batch=batch)
        assert abs(cycles - estimate) <= 3, (m, k, n, precision, batch, cycles, estimate)
