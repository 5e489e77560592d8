"""conv2d lowered to GEMM instructions by the driver: banded im2col, chosen per shape by a cycle model.

A GEMM row is one *band* of ``band_h x band_w`` output pixels of one image; its K holds every input
pixel the band reads (channel-major, then input row, input column); B is the *banded* weight matrix
that places each kernel tap at the input pixel it multiplies for each output of the band (zeros
elsewhere); the GEMM columns are (output channel, band row, band column). A 1x1 band is plain
im2col (K = Cin_g*kh*kw, B = the weights). Larger bands fill the array's columns with output pixels
when a group has few output channels: a depthwise 3x3 conv with 2x4 bands computes 8 outputs per GEMM
row from K = 4*6 = 24 inputs (9/24 of the products are useful) instead of 1 output column in 8.

Groups with fewer GEMM columns than the array (``Cout_g * band pixels < cols``) can also be packed
side by side into one GEMM problem with a block-diagonal B (``pack`` groups per problem), trading zero
products for fewer problems. The problems of equal shape (every one but a ragged last pack) run as ONE
batched GEMM instruction (:func:`tridsa.sw.gemm_ops.emit_gemm_batch`), so the instruction's fixed cost
is paid once per layer, not once per group. :func:`choose_lowering` picks the band and the packing
with the smallest estimated cycles (:func:`tridsa.sw.cycle_model.estimate_gemm_cycles`); every choice gives the same result.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from ..spec.config import ceil_div
from .cycle_model import estimate_gemm_cycles
from .gemm_ops import gemm_problems, resolve_out_dtype
from .host_memory import check_host_bytes
from .operands import integer_matrix
from ..spec.requant import OUT_FORMATS
from .requant import Requant

__all__ = ["ConvShape", "Lowering", "conv2d_gemms", "conv_output_size", "choose_lowering"]


def _pair(value, name):
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = (int(value), int(value))
    if not (isinstance(value, (tuple, list)) and len(value) == 2 and all(isinstance(v, (int, np.integer)) for v in value)):
        raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
    return tuple(int(v) for v in value)


def conv_output_size(size, kernel, stride, padding, dilation):
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1



@dataclasses.dataclass(frozen=True)
class ConvShape:
    """Sizes of one conv2d (NCHW input, OIHW weights); pairs are (height, width)."""
    batch: int
    cin: int
    size: tuple
    cout: int
    kernel: tuple
    stride: tuple
    padding: tuple
    dilation: tuple
    groups: int

    @property
    def cin_g(self): return self.cin // self.groups
    @property
    def cout_g(self): return self.cout // self.groups
    @property
    def out_size(self):
        return tuple(conv_output_size(*args) for args in zip(self.size, self.kernel, self.stride, self.padding,
                                                            self.dilation))
    @property
    def macs(self):
        """Useful MACs: every output times the products of its kernel (no padding zeros)."""
        oh, ow = self.out_size
        return self.batch * self.cout * oh * ow * self.cin_g * self.kernel[0] * self.kernel[1]


@dataclasses.dataclass(frozen=True)
class Lowering:
    """A band of ``band = (h, w)`` output pixels per GEMM row, ``pack`` groups per GEMM instruction."""
    band: tuple
    pack: int

    def offsets(self, shape: ConvShape, axis: int) -> np.ndarray:
        """Input offsets (from the band origin) the band reads along ``axis`` (0 rows, 1 columns)."""
        taps = np.arange(shape.kernel[axis]) * shape.dilation[axis]
        outs = np.arange(self.band[axis]) * shape.stride[axis]
        return np.unique(outs[:, None] + taps[None, :])

    def bands(self, shape: ConvShape) -> tuple:
        return tuple(ceil_div(o, b) for o, b in zip(shape.out_size, self.band))

    def gemm_batches(self, shape: ConvShape) -> list:
        """``((M, K, N), problems)`` of each batched GEMM instruction, in order (memory permitting)."""
        nby, nbx = self.bands(shape)
        m = shape.batch * nby * nbx
        k = shape.cin_g * len(self.offsets(shape, 0)) * len(self.offsets(shape, 1))
        n = shape.cout_g * self.band[0] * self.band[1]
        full, ragged = divmod(shape.groups, self.pack)
        return [((m, k * p, n * p), count) for p, count in ((self.pack, full), (ragged, 1)) if p and count]


def choose_lowering(config, shape: ConvShape, precision="int8", out_format=1) -> Lowering:
    """The band and packing with the fewest estimated cycles; ties go to the smaller band.

    Bands with more GEMM columns than ``max(cols, Cout_g)`` (``Cout_g * h * w`` columns) are not
    considered: once the columns are full, a larger band only lengthens K.
    """
    oh, ow = shape.out_size
    limit = max(config.cols, shape.cout_g)
    best = None
    for bh in range(1, oh + 1):
        for bw in range(1, ow + 1):
            columns = shape.cout_g * bh * bw
            if columns > limit:
                break
            for pack in range(1, min(shape.groups, max(1, config.cols // columns)) + 1):
                lowering = Lowering((bh, bw), pack)
                cycles = sum(estimate_gemm_cycles(config, m, k, n, precision == "int4", out_format, count)
                             for (m, k, n), count in lowering.gemm_batches(shape))
                key = (cycles, bh * bw, -pack)
                if best is None or key < best[0]:
                    best = (key, lowering)
    return best[1]


def band_patches(x, shape: ConvShape, lowering: Lowering) -> np.ndarray:
    """A of one group: x (N, Cin_g, H, W) -> (N * bands, Cin_g * rows read * columns read)."""
    (ph, pw), (bh, bw), (sh, sw) = shape.padding, lowering.band, shape.stride
    rows, cols = lowering.offsets(shape, 0), lowering.offsets(shape, 1)
    nby, nbx = lowering.bands(shape)
    iy = (np.arange(nby) * bh * sh)[:, None] + rows[None, :]            # (nby, rows read)
    ix = (np.arange(nbx) * bw * sw)[:, None] + cols[None, :]            # (nbx, columns read)
    # zero padding, plus extra rows/columns read only by the outputs of ragged last bands (discarded)
    extra_h = max(0, int(iy.max()) + 1 - (x.shape[2] + 2 * ph))
    extra_w = max(0, int(ix.max()) + 1 - (x.shape[3] + 2 * pw))
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph + extra_h), (pw, pw + extra_w)))
    patches = xp[:, :, iy[:, :, None, None], ix[None, None, :, :]]     # (N, C, nby, rows, nbx, cols)
    return patches.transpose(0, 2, 4, 1, 3, 5).reshape(x.shape[0] * nby * nbx, -1)


def band_weights(w, shape: ConvShape, lowering: Lowering) -> np.ndarray:
    """B of one group: w (Cout_g, Cin_g, kh, kw) -> (K, Cout_g * h * w), K ordered as in band_patches."""
    (bh, bw), (sh, sw), (dh, dw) = lowering.band, shape.stride, shape.dilation
    rows, cols = lowering.offsets(shape, 0), lowering.offsets(shape, 1)
    cout_g, cin_g, kh, kw = w.shape
    b = np.zeros((cin_g, len(rows), len(cols), cout_g, bh, bw), np.int64)
    for oy in range(bh):
        for ky in range(kh):
            r = np.searchsorted(rows, oy * sh + ky * dh)
            for ox in range(bw):
                for kx in range(kw):
                    b[:, r, np.searchsorted(cols, ox * sw + kx * dw), :, oy, ox] = w[:, :, ky, kx].T
    return b.reshape(cin_g * len(rows) * len(cols), cout_g * bh * bw)


def _block_diagonal(blocks):
    out = np.zeros((sum(b.shape[0] for b in blocks), sum(b.shape[1] for b in blocks)), np.int64)
    r = c = 0
    for b in blocks:
        out[r:r + b.shape[0], c:c + b.shape[1]] = b
        r, c = r + b.shape[0], c + b.shape[1]
    return out


def _column_requant(requant, channels, repeat):
    """The requant of GEMM columns (channel-major, ``repeat`` columns per channel)."""
    if requant is None or not requant.per_channel:
        return requant
    mult, shift = (np.repeat(v[channels], repeat) for v in requant.channel_arrays(requant.channels))
    return Requant(mult, shift, requant.zero_point, requant.rounding)


def conv2d_gemms(config, x, w, bias, stride, padding, dilation, groups, requant, relu, precision, out_dtype,
                 lowering: Lowering | None = None):
    """The GEMMs of a conv2d: ``(jobs, finish, macs)``.

    ``jobs`` is a list of :class:`~tridsa.sw.gemm_ops.GemmProblems` (one batch per GEMM shape of the
    lowering, run with :func:`tridsa.sw.tiling.run_gemm`); ``finish(values)`` assembles the output from
    their results. ``lowering`` None: :func:`choose_lowering`'s. ``macs`` counts useful MACs only
    (:attr:`ConvShape.macs`). Every argument is validated before anything runs.
    """
    x = integer_matrix(x, "x", ndim=4)
    w = integer_matrix(w, "w", ndim=4)
    stride, padding, dilation = _pair(stride, "stride"), _pair(padding, "padding"), _pair(dilation, "dilation")
    if min(stride) < 1 or min(dilation) < 1 or min(padding) < 0:
        raise ValueError(f"stride and dilation must be >= 1 and padding >= 0, got {stride}, {dilation}, {padding}")
    n, cin, h, wd = x.shape
    cout, cin_g, kh, kw = w.shape
    if not isinstance(groups, (int, np.integer)) or groups < 1 or cin % groups or cout % groups:
        raise ValueError(f"groups={groups!r} must be a positive int dividing in_channels={cin} and out_channels={cout}")
    if cin_g * groups != cin:
        raise ValueError(f"w has {cin_g} input channels per group, x has {cin} channels in {groups} groups "
                         f"(expected {cin // groups})")
    if requant is not None and not isinstance(requant, Requant):
        raise TypeError(f"requant must be a tridsa.Requant or None, got {type(requant).__name__}")
    if requant is not None and requant.per_channel and requant.channels != cout:
        raise ValueError(f"per-channel requant has {requant.channels} channels, the conv has {cout} output channels")
    if bias is not None:
        bias = np.asarray(bias)
        if bias.shape != (cout,):
            raise ValueError(f"bias must have shape ({cout},), got {bias.shape}")
    shape = ConvShape(n, cin, (h, wd), cout, (kh, kw), stride, padding, dilation, int(groups))
    oh, ow = shape.out_size
    if oh < 1 or ow < 1:
        raise ValueError(f"the kernel {kh}x{kw} does not fit the padded {h}x{wd} input")
    out_format = OUT_FORMATS[resolve_out_dtype(out_dtype, requant)]
    if lowering is None:
        lowering = choose_lowering(config, shape, precision, out_format)
    cout_g, band_pixels = shape.cout_g, lowering.band[0] * lowering.band[1]

    def problem(g0):
        """(A, B, bias, requant) of the GEMM problem of groups g0 .. g0 + pack - 1."""
        gs = range(g0, min(g0 + lowering.pack, groups))
        patches = np.concatenate([band_patches(x[:, g * cin_g:(g + 1) * cin_g], shape, lowering) for g in gs], axis=1)
        weights = _block_diagonal([band_weights(w[g * cout_g:(g + 1) * cout_g], shape, lowering) for g in gs])
        channels = np.arange(g0 * cout_g, (gs[-1] + 1) * cout_g)
        gbias = np.repeat(np.zeros(len(channels), np.int64) if bias is None else bias[channels], band_pixels)
        return patches, weights.astype(w.dtype), gbias, _column_requant(requant, channels, band_pixels)

    nby, nbx = lowering.bands(shape)
    check_host_bytes(sum(count * (m * k + k * n_cols) for (m, k, n_cols), count in lowering.gemm_batches(shape))
                     + n * cout * nby * nbx * band_pixels * 4, "the conv2d's im2col operands and result")
    jobs, g0 = [], 0
    for _, count in lowering.gemm_batches(shape):
        a, b, gbias, rqs = zip(*(problem(g0 + i * lowering.pack) for i in range(count)))
        jobs.append(gemm_problems(config, np.stack(a), np.stack(b), np.stack(gbias),
                                  None if requant is None else list(rqs), relu, precision, out_dtype))
        g0 += count * lowering.pack

    def finish(values):
        """The conv output from the (batch, M, N) results of the jobs, in order."""
        (nby, nbx), (bh, bw) = lowering.bands(shape), lowering.band
        y = np.concatenate([y for job in values for y in job], axis=1).reshape(n, nby, nbx, cout, bh, bw)
        y = y.transpose(0, 3, 1, 4, 2, 5).reshape(n, cout, nby * bh, nbx * bw)
        return np.ascontiguousarray(y[:, :, :oh, :ow])

    return jobs, finish, shape.macs
