"""conv2d lowered to GEMM instructions by im2col (done by the driver), one GEMM per group.

Patches are GEMM rows, output channels GEMM columns. Groups with fewer output channels than the array
has columns (depthwise: one each) are packed ``cols // Cout_g`` at a time into one GEMM with a
block-diagonal weight matrix: one instruction per ``cols`` channels instead of one per channel. The
zeros off the diagonal are multiplied too, so depthwise convolution still runs at about 1/cols of
peak; a dedicated depthwise dataflow (line buffer + per-column operands) is future work.
"""
from __future__ import annotations

import numpy as np

from .builder import ProblemTooLarge, ProgramBuilder
from .gemm_ops import emit_gemm
from .operands import integer_matrix
from .requant import Requant

__all__ = ["conv2d_program", "im2col", "conv_output_size"]


def _pair(value, name):
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = (int(value), int(value))
    if not (isinstance(value, (tuple, list)) and len(value) == 2 and all(isinstance(v, (int, np.integer)) for v in value)):
        raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
    return tuple(int(v) for v in value)


def conv_output_size(size, kernel, stride, padding, dilation):
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def im2col(x, kh, kw, stride, padding, dilation):
    """(N, C, H, W) -> (N*OH*OW, C*kh*kw) patches, channel-major then kernel row, kernel column."""
    n, c, h, w = x.shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    oh = conv_output_size(h, kh, sh, ph, dh)
    ow = conv_output_size(w, kw, sw, pw, dw)
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    cols = np.empty((n, oh, ow, c, kh, kw), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, :, i * dh:i * dh + sh * (oh - 1) + 1:sh, j * dw:j * dw + sw * (ow - 1) + 1:sw]
            cols[:, :, :, :, i, j] = patch.transpose(0, 2, 3, 1)
    return cols.reshape(n * oh * ow, c * kh * kw), (oh, ow)


def _group_requant(requant, lo, hi):
    if requant is None or not requant.per_channel:
        return requant
    mult = requant.multiplier[lo:hi] if isinstance(requant.multiplier, np.ndarray) else requant.multiplier
    shift = requant.shift[lo:hi] if isinstance(requant.shift, np.ndarray) else requant.shift
    return Requant(mult, shift, requant.zero_point, requant.rounding)


def conv2d_program(config, x, w, bias, stride, padding, dilation, groups, requant, relu, precision, out_dtype):
    """Build the Programs of a conv2d; return ``(programs, finish(memories) -> output, macs)``.

    One Program holds as many groups as fit the memory; the rest go to further Programs.
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
    if requant is not None and isinstance(requant, Requant) and requant.per_channel and requant.channels != cout:
        raise ValueError(f"per-channel requant has {requant.channels} channels, the conv has {cout} output channels")
    if bias is not None:
        bias = np.asarray(bias)
        if bias.shape != (cout,):
            raise ValueError(f"bias must have shape ({cout},), got {bias.shape}")
    oh = conv_output_size(h, kh, stride[0], padding[0], dilation[0])
    ow = conv_output_size(wd, kw, stride[1], padding[1], dilation[1])
    if oh < 1 or ow < 1:
        raise ValueError(f"the kernel {kh}x{kw} does not fit the padded {h}x{wd} input")
    cout_g = cout // groups
    # Small groups (depthwise: one output channel each) are packed side by side into one GEMM with a
    # block-diagonal B, so one instruction fills the array's columns instead of one column per group.
    pack = max(1, config.cols // cout_g)
    pieces, builder, calls = [], ProgramBuilder(config), []
    for g0 in range(0, groups, pack):
        gs = range(g0, min(g0 + pack, groups))
        patches = np.concatenate([im2col(x[:, g * cin_g:(g + 1) * cin_g], kh, kw, stride, padding, dilation)[0]
                                  for g in gs], axis=1)
        kg = cin_g * kh * kw
        weights = np.zeros((kg * len(gs), cout_g * len(gs)), np.int64)
        for i, g in enumerate(gs):
            weights[i * kg:(i + 1) * kg, i * cout_g:(i + 1) * cout_g] = w[g * cout_g:(g + 1) * cout_g].reshape(cout_g, -1).T
        lo, hi = g0 * cout_g, (gs[-1] + 1) * cout_g
        gbias = None if bias is None else bias[lo:hi]
        args = (patches, weights.astype(np.int8), gbias, _group_requant(requant, lo, hi),
                relu, precision, out_dtype, f"groups{g0}")
        try:
            call = emit_gemm(builder, *args)
        except ProblemTooLarge:
            if not calls:
                raise
            # memory full: these groups start the next Program
            pieces.append((builder.build(), calls))
            builder, calls = ProgramBuilder(config), []
            call = emit_gemm(builder, *args)
        call.macs //= len(gs)          # the block-diagonal zeros are not useful MACs
        calls.append(call)
    pieces.append((builder.build(), calls))

    def finish(memories):
        outs = [call.result(program, memory) for (program, calls), memory in zip(pieces, memories) for call in calls]
        y = np.concatenate(outs, axis=1).reshape(n, oh, ow, cout)
        return np.ascontiguousarray(y.transpose(0, 3, 1, 2))

    return [program for program, _ in pieces], finish, sum(c.macs for _, cs in pieces for c in cs)
