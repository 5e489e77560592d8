"""conv2d lowered to GEMMs (im2col) vs a direct NumPy convolution, and on every backend."""
import numpy as np
import pytest

from conftest import SMALL, accelerator, backend_params
from tridsa import Requant
from tridsa.sw.requant import requantize


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
    from tridsa import Accelerator, Config
    cfg = SMALL.replace(mem_depth=512)
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, (2, 8, 8, 8)).astype(np.int8)
    w = rng.integers(-128, 128, (8, 1, 3, 3)).astype(np.int8)
    acc = Accelerator("golden", cfg)
    np.testing.assert_array_equal(acc.conv2d(x, w, padding=1, groups=8), direct_conv(x, w, padding=(1, 1), groups=8))
    assert acc.last_run.instructions == 2      # 4 channels per GEMM (block-diagonal), one GEMM per Program
