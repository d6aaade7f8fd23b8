"""Rate-fidelity plots (matplotlib, imported only here): log-scale rate axis, one curve per codec family."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .._atomic import atomic_writer
from .._errors import InputError

#: Metric key -> axis label.
METRIC_LABELS = {
    "zs_top1": "zero-shot top-1",
    "zs_top5": "zero-shot top-5",
    "centroid_top1": "nearest-centroid top-1",
    "knn10": "10-NN overlap with uncompressed",
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


def plot_rate_fidelity(reports: Sequence[dict[str, Any]], path: str | Path,
                       metrics: Sequence[str] | None = None, x: str = "payload_bits_per_item",
                       title: str | None = None) -> list[tuple[str, str]]:
    """Write a PNG with one panel per (report, metric); returns the (dataset, metric) panels drawn.

    Each panel has one curve per codec family (rows sorted by rate), the uncompressed figure as a dashed
    line, and rows from `report["pixel_codecs"]` too when `x` is "bpp".
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FuncFormatter, LogLocator
    except ImportError:
        raise InputError("plotting needs matplotlib (pip install 'semzip[eval]')") from None
    if x not in _X_LABELS:
        raise InputError(f"unknown rate axis {x!r}; one of {', '.join(_X_LABELS)}")
    panels = [(rep, m) for rep in reports for m in (metrics or DEFAULT_METRICS)
              if m in rep["reference"]["metrics"]]
    if metrics is None and len(reports) > 1:  # several datasets: their first task metric each
        panels = [next((rep, m) for m in DEFAULT_METRICS if m in rep["reference"]["metrics"]) for rep in reports]
    if not panels:
        raise InputError("nothing to plot: the reports have none of the requested metrics")
    families = _families(reports, x)
    style = {f: (f"C{i % 10}", _MARKERS[i % len(_MARKERS)]) for i, f in enumerate(families)}
    pixel_families = {r["family"] for rep in reports for r in rep.get("pixel_codecs", [])}

    cols = 2 if len(panels) == 4 else min(3, len(panels))
    rows_n = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows_n, cols, figsize=(4.4 * cols, 3.4 * rows_n + 1.0), squeeze=False)
    single = len({rep["dataset"] for rep, _ in panels}) == 1
    for ax, (rep, metric) in zip(axes.flat, panels):
        ref = rep["reference"]
        for family in families:
            pts = sorted((r[x], r["metrics"][metric]) for r in _rows(rep, x)
                         if r["family"] == family and metric in r["metrics"] and r.get(x))
            if pts:
                colour, marker = style[family]
                pixel = family in pixel_families
                ax.plot(*zip(*pts), marker=marker, color=colour, linewidth=1.3 if pixel else 1.6,
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
        ax.xaxis.set_major_locator(LogLocator(base=base))
        ax.xaxis.set_major_formatter(FuncFormatter(_rate_tick))
        ax.set_xlabel(_X_LABELS[x], fontsize=9)
        label = METRIC_LABELS.get(metric, metric)
        ax.set_ylabel(label, fontsize=9)
        ax.set_title(label if single else f"{rep['dataset']}: {label}", fontsize=10)
        ax.grid(True, which="major", alpha=0.3)
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
        fig.savefig(fh, format="png", dpi=130)
    plt.close(fig)
    return [(rep["dataset"], m) for rep, m in panels]


def _rows(rep: dict[str, Any], x: str) -> list[dict[str, Any]]:
    """Measured rows (failed codecs have none of the figures) and, on the bpp axis, pixel codecs."""
    rows = [r for r in rep["rows"] if "error" not in r]
    return rows + (list(rep.get("pixel_codecs", [])) if x == "bpp" else [])


def _families(reports: Sequence[dict[str, Any]], x: str) -> list[str]:
    seen: dict[str, None] = {}
    for rep in reports:
        for r in _rows(rep, x):
            seen.setdefault(r["family"], None)
    return list(seen)


def _rate_tick(value: float, _pos: int) -> str:
    if value >= 1:
        return f"{value:g}" if value < 1e5 else f"{value:.0e}"
    return f"{value:g}"
