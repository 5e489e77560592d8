#!/usr/bin/env python3
"""Train the four small workloads in torch, quantize them post-training, write ``sw/weights/*.npz``.

Usage::

    python scripts/train_models.py            # train, quantize, evaluate, write the files
    python scripts/train_models.py --requantize   # keep the float models, redo quantization
    python scripts/train_models.py --check    # only evaluate the files that are there

Data: scikit-learn's bundled digits set (1797 8x8 images, pixels 0..16) with a fixed stratified
70/30 split (seed 0), and for DLRM the deterministic synthetic click-through generator of
:mod:`tridsa.sw.workloads.dlrm` (no Criteo data is available offline). Calibration uses the train
split only. Everything is seeded; on the same torch build the files are reproducible.

Needs ``torch==2.13.0`` and ``scikit-learn``; inference does not.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

from tridsa.sw import workloads as wl
from tridsa.sw.quantize import fold_bn
from tridsa.sw.requant import requantize
from tridsa.sw.workloads import cnn, dlrm, rnn, transformer

SEED = 0


class NumpyAcc:
    """Fast stand-in for ``tridsa.Accelerator`` (int64 NumPy + the golden output stage)."""

    @staticmethod
    def _check(x, precision):
        lo, hi = (-8, 7) if precision == "int4" else (-128, 255)
        if x.min() < lo or x.max() > hi:
            raise ValueError(f"operand out of range for {precision}: [{x.min()}, {x.max()}]")
        return x.astype(np.int64)

    def matmul(self, a, b, bias=None, requant=None, relu=False, precision="int8", out_dtype=None):
        acc = self._check(a, precision) @ self._check(b, precision)
        return requantize(acc, bias, requant, relu, out_dtype)

    def conv2d(self, x, w, bias=None, stride=1, padding=0, dilation=1, groups=1, requant=None,
               relu=False, precision="int8", out_dtype=None):
        assert padding == 0 and dilation == 1
        x, w = self._check(x, precision), self._check(w, precision)
        from numpy.lib.stride_tricks import sliding_window_view
        n, c = x.shape[:2]
        o, cg, kh, kw = w.shape
        win = sliding_window_view(x, (kh, kw), axis=(2, 3))[:, :, ::stride, ::stride]
        ho, wo = win.shape[2:4]
        win = win.reshape(n, groups, c // groups, ho, wo, kh, kw)
        acc = np.einsum("bgchwij,gocij->bhwgo", win, w.reshape(groups, o // groups, cg, kh, kw))
        y = requantize(acc.reshape(n, ho, wo, o), bias, requant, relu, out_dtype)
        return y.transpose(0, 3, 1, 2)

    def embedding_bag(self, table, indices, offsets, mode="sum", per_sample_weights=None):
        assert mode == "sum" and per_sample_weights is None
        table = np.asarray(table, dtype=np.int64)
        ends = np.append(offsets[1:], len(indices))
        return np.stack([table[indices[s:e]].sum(0) for s, e in zip(offsets, ends)]).astype(np.int32)


# -- data ------------------------------------------------------------------------------------------
def digits_split():
    """``(x_train, y_train, x_test, y_test)``: (N, 8, 8) int8 pixels, int64 labels."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    d = load_digits()
    x = d.images.astype(np.int8)
    return train_test_split(x, d.target.astype(np.int64), test_size=0.3, random_state=SEED, stratify=d.target)


def _fit(model, x, y, epochs, lr, loss="ce", batch=64, weight_decay=1e-4):
    import torch
    g = torch.Generator().manual_seed(SEED)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    fn = torch.nn.functional.cross_entropy if loss == "ce" else torch.nn.functional.binary_cross_entropy_with_logits
    n = len(y)
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(n, generator=g)
        for i in range(0, n, batch):
            idx = perm[i:i + batch]
            opt.zero_grad()
            out = model(*[t[idx] for t in x]) if isinstance(x, tuple) else model(x[idx])
            fn(out, y[idx]).backward()
            opt.step()
        sched.step()
    model.eval()
    return model


def _np(t):
    return t.detach().cpu().double().numpy()


# -- CNN -------------------------------------------------------------------------------------------
def train_cnn(xtr, ytr) -> cnn.FloatCNN:
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1, self.b1 = nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16)
            self.c2, self.b2 = nn.Conv2d(16, 32, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(32)
            self.dw, self.b3 = nn.Conv2d(32, 32, 3, padding=1, groups=32, bias=False), nn.BatchNorm2d(32)
            self.pw, self.b4 = nn.Conv2d(32, 32, 1, bias=False), nn.BatchNorm2d(32)
            self.fc = nn.Linear(32, 10)

        def forward(self, x):
            a = torch.relu(self.b1(self.c1(x)))
            a = torch.relu(self.b2(self.c2(a)))
            b = torch.relu(self.b3(self.dw(a)))
            b = self.b4(self.pw(b))
            return self.fc(torch.relu(a + b).mean(dim=(2, 3)))

    torch.manual_seed(SEED)
    net = _fit(Net(), torch.tensor(xtr, dtype=torch.float32).reshape(-1, 1, 8, 8) / 16,
               torch.tensor(ytr), epochs=40, lr=1e-2)
    params = {}
    for conv, bn in (("c1", net.b1), ("c2", net.b2), ("dw", net.b3), ("pw", net.b4)):
        w, b = fold_bn(_np(getattr(net, conv).weight), None, _np(bn.weight), _np(bn.bias),
                       _np(bn.running_mean), _np(bn.running_var), bn.eps)
        params[f"{conv}.w"], params[f"{conv}.b"] = w, b
    params["fc.w"], params["fc.b"] = _np(net.fc.weight).T, _np(net.fc.bias)
    fm = cnn.FloatCNN(params)
    with torch.no_grad():
        ref = net(torch.tensor(xtr[:64], dtype=torch.float32).reshape(-1, 1, 8, 8) / 16).numpy()
    assert np.allclose(fm.forward(xtr[:64]), ref, atol=1e-3), "numpy float CNN disagrees with torch"
    return fm


# -- Transformer -----------------------------------------------------------------------------------
def train_transformer(xtr, ytr) -> transformer.FloatTransformer:
    import torch
    from torch import nn
    D, H, T = transformer.D, transformer.HEADS, transformer.T

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb, self.qkv, self.out = nn.Linear(16, D), nn.Linear(D, 3 * D), nn.Linear(D, D)
            self.ln1, self.ln2 = nn.LayerNorm(D, eps=transformer.LN_EPS), nn.LayerNorm(D, eps=transformer.LN_EPS)
            self.ffn1, self.ffn2 = nn.Linear(D, transformer.FFN), nn.Linear(transformer.FFN, D)
            self.cls = nn.Linear(D, 10)

        def forward(self, t):
            h0 = self.emb(t)
            q, k, v = self.qkv(h0).view(-1, T, 3, H, D // H).permute(2, 0, 3, 1, 4)
            p = torch.softmax(q @ k.transpose(-1, -2) / (D // H) ** 0.5, dim=-1)
            ctx = (p @ v).transpose(1, 2).reshape(-1, T, D)
            h1 = self.ln1(h0 + self.out(ctx))
            h2 = self.ln2(h1 + self.ffn2(nn.functional.gelu(self.ffn1(h1))))
            return self.cls(h2.mean(1))

    torch.manual_seed(SEED)
    tok = lambda x: torch.tensor(transformer.tokens(x), dtype=torch.float32) * transformer.INPUT_SCALE
    net = _fit(Net(), tok(xtr), torch.tensor(ytr), epochs=80, lr=3e-3)
    params = {}
    for name in ("emb", "qkv", "out", "ffn1", "ffn2", "cls"):
        layer = getattr(net, name)
        params[f"{name}.w"], params[f"{name}.b"] = _np(layer.weight).T, _np(layer.bias)
    for name in ("ln1", "ln2"):
        params[f"{name}.g"], params[f"{name}.b"] = _np(getattr(net, name).weight), _np(getattr(net, name).bias)
    fm = transformer.FloatTransformer(params)
    with torch.no_grad():
        ref = net(tok(xtr[:64])).numpy()
    assert np.allclose(fm.forward(xtr[:64]), ref, atol=1e-3), "numpy float Transformer disagrees with torch"
    return fm


# -- LSTM ------------------------------------------------------------------------------------------
def train_lstm(xtr, ytr) -> rnn.FloatLSTM:
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(8, rnn.HIDDEN, batch_first=True)
            self.cls = nn.Linear(rnn.HIDDEN, 10)

        def forward(self, x):
            return self.cls(self.lstm(x)[0][:, -1])

    torch.manual_seed(SEED)
    seq = lambda x: torch.tensor(x, dtype=torch.float32) * rnn.INPUT_SCALE
    net = _fit(Net(), seq(xtr), torch.tensor(ytr), epochs=80, lr=1e-2)
    params = {"wx": _np(net.lstm.weight_ih_l0).T, "wh": _np(net.lstm.weight_hh_l0).T,
              "b": _np(net.lstm.bias_ih_l0 + net.lstm.bias_hh_l0),
              "cls.w": _np(net.cls.weight).T, "cls.b": _np(net.cls.bias)}
    fm = rnn.FloatLSTM(params)
    with torch.no_grad():
        ref = net(seq(xtr[:64])).numpy()
    assert np.allclose(fm.forward(xtr[:64]), ref, atol=1e-3), "numpy float LSTM disagrees with torch"
    return fm


# -- DLRM ------------------------------------------------------------------------------------------
DLRM_TRAIN, DLRM_TEST = (20000, 1), (5000, 2)      # (samples, seed) of the synthetic splits


def train_dlrm(dense, sparse, clicks) -> dlrm.FloatDLRM:
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.bot1, self.bot2 = nn.Linear(dlrm.DENSE, 16), nn.Linear(16, dlrm.EMB_DIM)
            self.emb = nn.ModuleList(nn.EmbeddingBag(r, dlrm.EMB_DIM, mode="sum") for r in dlrm.TABLE_ROWS)
            for e in self.emb:
                nn.init.normal_(e.weight, 0, 0.3)
            n = 1 + len(dlrm.TABLE_ROWS)
            self.pairs = torch.triu_indices(n, n, offset=1)
            self.top1, self.top2 = nn.Linear(dlrm.EMB_DIM + n * (n - 1) // 2, 16), nn.Linear(16, 1)

        def forward(self, x, *bags):
            b = torch.relu(self.bot2(torch.relu(self.bot1(x))))
            z = torch.stack([b] + [e(i, o) for e, (i, o) in zip(self.emb, zip(bags[0::2], bags[1::2]))], 1)
            dots = (z @ z.transpose(1, 2))[:, self.pairs[0], self.pairs[1]]
            return self.top2(torch.relu(self.top1(torch.cat([b, dots], 1))))[:, 0]

    torch.manual_seed(SEED)
    net, n = Net(), len(clicks)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    x = torch.tensor(dense, dtype=torch.float32) * dlrm.DENSE_SCALE
    y = torch.tensor(clicks, dtype=torch.float32)
    g = torch.Generator().manual_seed(SEED)

    def bags(sel):
        out = []
        for idx, off in sparse:
            ends = np.append(off[1:], len(idx))
            parts = [idx[off[k]:ends[k]] for k in sel]
            lens = np.array([len(q) for q in parts])
            out += [torch.tensor(np.concatenate(parts)), torch.tensor(np.concatenate([[0], np.cumsum(lens)[:-1]]))]
        return out

    for _ in range(15):
        perm = torch.randperm(n, generator=g).numpy()
        for i in range(0, n, 256):
            sel = perm[i:i + 256]
            opt.zero_grad()
            nn.functional.binary_cross_entropy_with_logits(net(x[sel], *bags(sel)), y[sel]).backward()
            opt.step()
    net.eval()
    params = {}
    for name in ("bot1", "bot2", "top1", "top2"):
        params[f"{name}.w"], params[f"{name}.b"] = _np(getattr(net, name).weight).T, _np(getattr(net, name).bias)
    for f, e in enumerate(net.emb):
        params[f"emb{f}"] = _np(e.weight)
    fm = dlrm.FloatDLRM(params)
    with torch.no_grad():
        ref = net(x[:64], *bags(np.arange(64))).numpy()
    sub = [(i[:o[64]], o[:64]) for i, o in sparse]
    assert np.allclose(fm.forward(dense[:64], sub), ref, atol=1e-3), "numpy float DLRM disagrees with torch"
    return fm


def run_dlrm(check: bool, acc, requantize: bool = False):
    train, test = dlrm.synthetic_ctr(*DLRM_TRAIN), dlrm.synthetic_ctr(*DLRM_TEST)
    if check or requantize:
        fm = dlrm.FloatDLRM.load(wl.WEIGHTS_DIR / "dlrm_float.npz")
    else:
        train_dlrm(*train).save(wl.WEIGHTS_DIR / "dlrm_float.npz")
        fm = dlrm.FloatDLRM.load(wl.WEIGHTS_DIR / "dlrm_float.npz")
    dense, sparse, clicks = test
    f = fm.forward(dense, sparse)
    row = ["dlrm", float(np.mean((f > 0) == clicks))]
    aucs = [dlrm.auc(f, clicks)]
    for prec in ("int8", "mixed"):
        path = wl.WEIGHTS_DIR / f"dlrm_{prec}.npz"
        if not check:
            dlrm.quantize_dlrm(fm, train[0], train[1], prec).save(path)
        q = dlrm.DLRM.load(path).forward(acc, dense, sparse)
        row.append(float(np.mean((q > 0) == clicks)))
        aucs.append(dlrm.auc(q, clicks))
    print(f"dlrm         float {row[1]:.4f}  int8 {row[2]:.4f}  int4/int8 {row[3]:.4f}   (AUC "
          + " / ".join(f"{a:.4f}" for a in aucs) + f"; click rate {clicks.mean():.3f})", flush=True)
    return row + aucs


# -- driver ----------------------------------------------------------------------------------------
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="only evaluate the stored files")
    ap.add_argument("--requantize", action="store_true", help="quantize the stored float models again")
    ap.add_argument("--only", nargs="*", default=["cnn", "transformer", "lstm", "dlrm"])
    ap.add_argument("--backend", default=None,
                    help="evaluate on tridsa.Accelerator(backend=...) instead of the fast NumPy stand-in")
    args = ap.parse_args(argv)
    xtr, xte, ytr, yte = digits_split()
    wl.WEIGHTS_DIR.mkdir(parents=True, exist_ok=True)
    if not args.check:
        np.savez_compressed(wl.WEIGHTS_DIR / "digits_test.npz", x=xte.astype(np.uint8), y=yte.astype(np.uint8))
    if args.backend:
        from tridsa import Accelerator
        acc = Accelerator(backend=args.backend)
    else:
        acc = NumpyAcc()
    trainers = {"cnn": (train_cnn, cnn.quantize_cnn, cnn.FloatCNN, cnn.CNN)}
    if hasattr(transformer, "quantize_transformer"):
        trainers["transformer"] = (train_transformer, transformer.quantize_transformer,
                                   transformer.FloatTransformer, transformer.Transformer)
    if hasattr(rnn, "quantize_lstm"):
        trainers["lstm"] = (train_lstm, rnn.quantize_lstm, rnn.FloatLSTM, rnn.LSTM)
    rows = []
    for name in args.only:
        if name == "dlrm":
            if hasattr(dlrm, "quantize_dlrm"):
                rows.append(run_dlrm(args.check, acc, args.requantize))
            continue
        train, quant, fcls, qcls = trainers[name]
        if args.check or args.requantize:
            fm = fcls.load(wl.WEIGHTS_DIR / f"{name}_float.npz")
        else:
            train(xtr, ytr).save(wl.WEIGHTS_DIR / f"{name}_float.npz")
            fm = fcls.load(wl.WEIGHTS_DIR / f"{name}_float.npz")   # quantize what is stored (float32)
        row = [name, wl.accuracy(fm.forward, xte, yte)]
        for prec in ("int8", "mixed"):
            path = wl.WEIGHTS_DIR / f"{name}_{prec}.npz"
            if not args.check:
                quant(fm, xtr, prec).save(path)
            qm = qcls.load(path)
            row.append(wl.accuracy(lambda x: qm.forward(acc, x), xte, yte, batch=16 if args.backend else 256))
        rows.append(row)
        print(f"{row[0]:12s} float {row[1]:.4f}  int8 {row[2]:.4f}  int4/int8 {row[3]:.4f}", flush=True)
    return rows


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
