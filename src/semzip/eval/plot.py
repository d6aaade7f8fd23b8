"""Rate-fidelity plots (matplotlib, imported only here): log-scale rate axis, one curve per codec
variant (a family with its non-rate parameters fixed, e.g. pq opq=0 apart from pq opq=1), error bars
for the spread over training seeds; PNG, PDF or SVG as the file name says."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._atomic import atomic_writer
from .._errors import InputError

#: Metric key -> axis label.
METRIC_LABELS = {
    "zs_top1": "zero-shot top-1",
    "zs_top5": "zero-shot top-5",
    "centroid_top1": "nearest-centroid top-1",
    "knn10": "10-NN overlap with uncompressed",
    "tags5": "tags@5 overlap with uncompressed",
    "cosine": "mean cosine to original",
    "i2t@1": "image→text R@1",
    "t2i@1": "text→image R@1",
    "i2t@5": "image→text R@5",
    "t2i@5": "text→image R@5",
}
#: Metrics drawn when none are named, in panel order (those a report lacks are skipped).
DEFAULT_METRICS = ("zs_top1", "centroid_top1", "i2t@1", "t2i@1", "knn10", "cosine")
_X_LABELS = {"payload_bits_per_item": "payload bits per item (counted, log scale)",
             "bits_per_item": "total bits per item (counted, log scale)",
             "bpp": "bits per pixel (counted, log scale)"}
_MARKERS = "osD^v<>Ph*X"
_FORMATS = ("png", "pdf", "svg")


def plot_rate_fidelity(reports: Sequence[dict[str, Any]], path: str | Path,
                       metrics: Sequence[str] | None = None, x: str = "payload_bits_per_item",
                       title: str | None = None) -> list[tuple[str, str]]:
    """Write a plot (PNG, PDF or SVG, by the suffix of `path`) with one panel per (report, metric);
    returns the (dataset, metric) panels drawn.

    Each panel has one curve per codec variant (points sorted by rate; rows of one spec from several
    seeds become one point at their mean with a min-max error bar), the uncompressed figure as a dashed
    line, and rows from `report["pixel_codecs"]` too when `x` is "bpp".
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise InputError("plotting needs matplotlib (pip install 'semzip[eval]')") from None
    if x not in _X_LABELS:
        raise InputError(f"unknown rate axis {x!r}; one of {', '.join(_X_LABELS)}")
    fmt = plot_format(path)
    panels = _panels(reports, metrics)
    families = _families(reports, x)
    style = {f: (f"C{i % 10}", _MARKERS[i % len(_MARKERS)]) for i, f in enumerate(families)}
    pixel_families = {r["family"] for rep in reports for r in rep.get("pixel_codecs", [])}

    cols = 2 if len(panels) == 4 else min(3, len(panels))
    rows_n = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows_n, cols, figsize=(4.4 * cols, 3.4 * rows_n + 1.0), squeeze=False)
    single = len({rep["dataset"] for rep, _ in panels}) == 1
    for ax, (rep, metric) in zip(axes.flat, panels):
        _draw_panel(ax, rep, metric, x, style, pixel_families, single)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    handles: dict[str, Any] = {}
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    fig.legend(handles.values(), handles.keys(), loc="lower center", ncol=min(len(handles), 8), fontsize=9,
               frameon=False)
    head = title or "Semantic fidelity against counted rate"
    if single and title is None:
        rep = panels[0][0]
        head += f": {rep['dataset']} ({rep['items']} items)"
    fig.suptitle(head, fontsize=12)
    fig.tight_layout(rect=(0, 0.06 if rows_n > 1 else 0.09, 1, 1))
    with atomic_writer(path) as fh:
        fig.savefig(fh, format=fmt, dpi=130)
    plt.close(fig)
    return [(rep["dataset"], m) for rep, m in panels]


def _panels(reports: Sequence[dict[str, Any]], metrics: Sequence[str] | None) -> list[tuple[dict[str, Any], str]]:
    """(report, metric) of every panel: the metrics asked for that a report has, or with several
    reports and none asked for, each report's first task metric."""
    panels = [(rep, m) for rep in reports for m in (metrics or DEFAULT_METRICS)
              if m in rep["reference"]["metrics"]]
    if metrics is None and len(reports) > 1:
        panels = [next((rep, m) for m in DEFAULT_METRICS if m in rep["reference"]["metrics"]) for rep in reports]
    if not panels:
        raise InputError("nothing to plot: the reports have none of the requested metrics")
    return panels


def _draw_panel(ax: Any, rep: dict[str, Any], metric: str, x: str, style: dict[str, tuple[str, str]],
                pixel_families: set[str], single: bool) -> None:
    """One panel: a curve per codec variant (colour and marker from `style`; pixel codecs dotted),
    the uncompressed level, and the log rate axis."""
    from matplotlib.ticker import FuncFormatter, LogLocator

    ref = rep["reference"]
    for family, (colour, marker) in style.items():
        pts = _points([r for r in _rows(rep, x) if _variant(r) == family and metric in r["metrics"] and r.get(x)],
                      x, metric)
        if pts:
            pixel = family in pixel_families
            xs, ys, lo, hi = (np.array(v) for v in zip(*pts))
            ax.errorbar(xs, ys, yerr=np.stack([ys - lo, hi - ys]) if (hi > lo).any() else None,
                        marker=marker, color=colour, linewidth=1.3 if pixel else 1.6, capsize=3,
                        linestyle=":" if pixel else "-", markersize=6,
                        label=f"{family} (pixels)" if pixel else family)
    level = ref["metrics"][metric]
    ax.axhline(level, color="0.35", linestyle="--", linewidth=1, label="uncompressed")
    ax.annotate(f"uncompressed {level:.3f}", (0.02, level), xycoords=("axes fraction", "data"),
                xytext=(0, -11), textcoords="offset points", fontsize=7.5, color="0.3")
    if ref.get(x):
        ax.plot([ref[x]], [level], marker="*", color="0.2", markersize=11, linestyle="none", label="float32")
    base = 10 if x == "bpp" else 2  # bits per item read best as powers of two, bpp as decades
    ax.set_xscale("log", base=base)
    ax.xaxis.set_major_locator(LogLocator(base=base, numticks=40))  # every power: each rate tick labelled
    ax.xaxis.set_major_formatter(FuncFormatter(_rate_tick))
    ax.set_xlabel(_X_LABELS[x], fontsize=9)
    label = METRIC_LABELS.get(metric, metric)
    ax.set_ylabel(label, fontsize=9)
    ax.set_title(label if single else f"{rep['dataset']}: {label}", fontsize=10)
    ax.grid(True, which="major", alpha=0.3)


def plot_format(path: str | Path) -> str:
    """The image format a plot file's suffix names (png, pdf, svg), or InputError: checked before work."""
    fmt = Path(path).suffix.lower().lstrip(".")
    if fmt not in _FORMATS:
        raise InputError(f"plot file {str(path)!r}: name it .png, .pdf or .svg (the format is taken from the suffix)")
    return fmt


def _rows(rep: dict[str, Any], x: str) -> list[dict[str, Any]]:
    """Measured rows (failed codecs have none of the figures) and, on the bpp axis, pixel codecs."""
    rows = [r for r in rep["rows"] if "error" not in r]
    return rows + (list(rep.get("pixel_codecs", [])) if x == "bpp" else [])


def _variant(row: dict[str, Any]) -> str:
    """The curve a row belongs to: its family, plus the spec parameters that do not set the rate
    (a stack: its stages' families, `pq+bq`)."""
    from ..codecs import codec_class
    from ..spec import parse_spec
    from .._errors import SemzipError

    try:
        spec = parse_spec(row["codec"])
        if spec.stages:
            return "+".join(stage.name for stage in spec.stages)
        fixed = [f"{k}={v}" for k, v in spec.params if k not in codec_class(spec.name).rate_params]
    except (SemzipError, KeyError):  # pixel codecs and float32 are families of their own
        return row["family"]
    return row["family"] + (f" {','.join(fixed)}" if fixed else "")


def _points(rows: Sequence[dict[str, Any]], x: str, metric: str) -> list[tuple[float, float, float, float]]:
    """(rate, mean, min, max) per spec, sorted by rate: several seeds of one spec make one point."""
    by_spec: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_spec.setdefault(r["codec"], []).append(r)
    out = []
    for group in by_spec.values():
        values = [r["metrics"][metric] for r in group]
        out.append((float(np.mean([r[x] for r in group])), float(np.mean(values)), min(values), max(values)))
    return sorted(out)


def _families(reports: Sequence[dict[str, Any]], x: str) -> list[str]:
    seen: dict[str, None] = {}
    for rep in reports:
        for r in _rows(rep, x):
            seen.setdefault(_variant(r), None)
    return list(seen)


def _rate_tick(value: float, _pos: int) -> str:
    """Compact labels so every power of two fits: 512, 1k, 2k, ... 16k (1k = 1024 bits)."""
    if value >= 1024:
        return f"{value / 1024:g}k"
    return f"{value:g}"
