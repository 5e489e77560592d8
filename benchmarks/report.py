"""Shared output helpers of the benchmarks: progress bar, Markdown table, JSON and PNG files.

Every benchmark (``benchmarks/bench_<name>.py``) exposes ``run(config, backend, out_dir) -> dict``; it
measures a list of cases, prints a Markdown table to stdout, shows progress on stderr and writes
``<name>.json`` and PNG plots into ``out_dir``. These helpers keep that output uniform and
dependency-free except for matplotlib (imported only when a plot is drawn, with the Agg backend).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tridsa.sw.progress import Progress

__all__ = ["Progress", "markdown_table", "write_json", "line_plot", "save_axes", "write_section", "publish_image"]

ROOT = Path(__file__).resolve().parent.parent


def _cell(value, digits: int) -> str:
    if value is None:
        return "-"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (float, np.floating)):
        return f"{value:.{digits}f}"
    return str(value)


def markdown_table(rows, columns, digits: int = 3) -> str:
    """A Markdown table of ``rows`` (dicts); ``columns`` is a list of keys or ``(key, header)`` pairs.

    Floats print with ``digits`` decimals, booleans as yes/no, missing values as ``-``.
    """
    cols = [(c, c) if isinstance(c, str) else tuple(c) for c in columns]
    lines = ["| " + " | ".join(h for _, h in cols) + " |",
             "|" + "|".join("---" for _ in cols) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row.get(k), digits) for k, _ in cols) + " |")
    return "\n".join(lines)


def _plain(value):
    """JSON-serializable copy of ``value`` (numpy scalars and arrays become Python numbers and lists)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def write_json(path, data) -> Path:
    """Write ``data`` as indented JSON (numpy values converted); create the folder; return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_plain(data), indent=2, sort_keys=False) + "\n")
    return path


def write_section(name: str, text: str) -> list:
    """Put ``text`` between ``<!-- name -->`` and ``<!-- /name -->`` in README.md and every docs/*.md
    that has those markers, so a published table is the one the benchmark just wrote, wherever it
    appears. Returns the files changed."""
    import re
    begin, end = f"<!-- {name} -->", f"<!-- /{name} -->"
    pattern = re.compile(re.escape(begin) + ".*?" + re.escape(end), re.S)
    changed = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        if not path.exists():
            continue
        old = path.read_text()
        new = pattern.sub(lambda _: f"{begin}\n{text.strip()}\n{end}", old)
        if new != old:
            path.write_text(new)
            changed.append(path)
    return changed


def publish_image(path) -> Path:
    """Copy a plot the benchmark just drew into docs/img (where README and docs show it)."""
    import shutil
    target = ROOT / "docs" / "img" / Path(path).name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, target)
    return target


def line_plot(path, series, *, xlabel: str, ylabel: str, title: str, logx: bool = False, logy: bool = False,
              hlines=()) -> Path:
    """Save a PNG with one line per series.

    Parameters
    ----------
    series:
        ``{label: (xs, ys)}`` or ``{label: (xs, ys, style)}`` with ``style`` a dict of matplotlib
        ``plot`` keywords (e.g. ``{"linestyle": "none"}`` for unconnected points); points are drawn in
        the given order with markers.
    hlines:
        ``[(y, label)]`` dashed reference lines (targets, peaks).
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    try:
        for label, (xs, ys, *style) in series.items():
            ax.plot(list(xs), list(ys), **dict(dict(marker="o"), **(style[0] if style else {})), label=label)
        for y, label in hlines:
            ax.axhline(y, linestyle="--", linewidth=1, color="gray")
            ax.annotate(label, (0.01, y), xycoords=("axes fraction", "data"), va="bottom", fontsize=8,
                        color="gray")
        if logx:
            ax.set_xscale("log")
        if logy:
            ax.set_yscale("log")
        save_axes(fig, ax, path, xlabel=xlabel, ylabel=ylabel, title=title)
    finally:
        plt.close(fig)
    return path


def save_axes(fig, ax, path, *, xlabel: str, ylabel: str, title: str) -> None:
    """Label ``ax`` (grid, legend) and save ``fig`` as ``path``: the common end of every benchmark plot."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
