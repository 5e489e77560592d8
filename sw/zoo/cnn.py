"""ResNet-50 (v1.5: stride in the 3x3 convolution) and MobileNetV2 at 224 x 224, batch 1.

Every convolution and the classifier run on the accelerator (int8, ReLU in the requant where the
network has one; MobileNetV2's ReLU6 is a ReLU at this int8 scale); max and average pooling and the
saturating residual adds are integer NumPy on the host.
"""
from __future__ import annotations

import numpy as np

from ..quantize import to_int8


__all__ = ["resnet50", "mobilenetv2", "RESNET50_STAGES", "MOBILENETV2_BLOCKS"]

#: (bottleneck width, output channels, blocks, stride of the first block) per stage.
RESNET50_STAGES = ((64, 256, 3, 1), (128, 512, 4, 2), (256, 1024, 6, 2), (512, 2048, 3, 2))
#: MobileNetV2 inverted residual blocks: (expansion t, output channels c, repeats n, first stride s).
MOBILENETV2_BLOCKS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                      (6, 160, 3, 2), (6, 320, 1, 1))


def _image(size) -> np.ndarray:
    rng = np.random.default_rng(7)
    return rng.integers(-128, 128, (1, 3, size, size), dtype=np.int8)


def _add(a, b) -> np.ndarray:
    """Saturating int8 residual add."""
    return np.clip(a.astype(np.int16) + b, -128, 127).astype(np.int8)


def _max_pool(x, k=3, s=2, p=1) -> np.ndarray:
    n, c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)), constant_values=-128)
    oh, ow = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    out = np.full((n, c, oh, ow), -128, np.int8)
    for dy in range(k):
        for dx in range(k):
            out = np.maximum(out, xp[:, :, dy:dy + s * oh:s, dx:dx + s * ow:s])
    return out


def _avg_pool(x) -> np.ndarray:
    """Global average pool (integer, rounded) -> (N, C) int8."""
    hw = x.shape[2] * x.shape[3]
    return to_int8(x.astype(np.int64).sum(axis=(2, 3)), 1.0 / hw)


def resnet50(rec, size: int = 224) -> None:
    x = rec.conv("conv1", _image(size), 64, 7, stride=2, padding=3)
    x = _max_pool(x)
    for s, (width, cout, blocks, stride) in enumerate(RESNET50_STAGES, start=2):
        for b in range(blocks):
            st = stride if b == 0 else 1
            tag = f"conv{s}_{b + 1}"
            y = rec.conv(f"{tag}/1x1a", x, width, 1)
            y = rec.conv(f"{tag}/3x3", y, width, 3, stride=st, padding=1)
            y = rec.conv(f"{tag}/1x1b", y, cout, 1, relu=False)
            shortcut = rec.conv(f"{tag}/down", x, cout, 1, stride=st, relu=False) if b == 0 else x
            x = np.maximum(_add(y, shortcut), 0).astype(np.int8)
    rec.linear("fc", _avg_pool(x), 1000, out_dtype="int32")


def mobilenetv2(rec, size: int = 224) -> None:
    x = rec.conv("conv1", _image(size), 32, 3, stride=2, padding=1)
    cin = 32
    for i, (t, c, n, s) in enumerate(MOBILENETV2_BLOCKS):
        for j in range(n):
            stride = s if j == 0 else 1
            tag = f"block{i + 1}_{j + 1}"
            hidden = cin * t
            y = rec.conv(f"{tag}/expand", x, hidden, 1) if t != 1 else x
            y = rec.conv(f"{tag}/dw", y, hidden, 3, stride=stride, padding=1, groups=hidden)
            y = rec.conv(f"{tag}/project", y, c, 1, relu=False)
            x = _add(x, y) if stride == 1 and cin == c else y
            cin = c
    x = rec.conv("conv_last", x, 1280, 1)
    rec.linear("fc", _avg_pool(x), 1000, out_dtype="int32")
