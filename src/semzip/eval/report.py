"""Terminal tables and JSON for evaluation reports."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from .._atomic import atomic_writer
from .runner import METRIC_TITLES

#: Metrics shown in the terminal table (the JSON has all of them, R@5 and R@10 included).
TABLE_METRICS = ("cosine", "knn10", "tags5", "zs_top1", "zs_top5", "centroid_top1", "i2t@1", "t2i@1")


def _cell(value: float | None, relative: float | None = None) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if relative is None else f"{value:.3f} ({100 * relative:.0f}%)"


def _rate(value: float | None) -> str:
    return "-" if value is None else (f"{value:.1f}" if value >= 10 else f"{value:.3g}")


def print_report(report: dict[str, Any], console: Console) -> None:
    """One row per codec: counted rates, then each metric with its share of the uncompressed figure."""
    ref = report["reference"]
    metrics = [m for m in TABLE_METRICS if m in ref["metrics"]]
    bpp = report["pixels_known"]
    table = Table(title=f"{report['dataset']}: {report['items']} items of width {report['dim']}, bits per item"
                        + (f", {report['model']}" if report.get("model") else ""))
    table.add_column("codec", no_wrap=True)
    table.add_column("payload\nbits", justify="right", no_wrap=True)
    table.add_column("total\nbits", justify="right", no_wrap=True)
    if bpp:
        table.add_column("bpp\n(total)", justify="right", no_wrap=True)
    for m in metrics:
        table.add_column(METRIC_TITLES[m], justify="right")
    for row in [ref, *report["rows"]]:
        if "error" in row:
            table.add_row(row["codec"], "-", "-", *(["-"] if bpp else []), *["-"] * len(metrics))
            continue
        rel = row.get("relative", {})
        cells = [row["codec"], _rate(row["payload_bits_per_item"]), _rate(row["bits_per_item"])]
        if bpp:
            cells.append(_rate(row.get("bpp")))
        cells += [_cell(row["metrics"].get(m), rel.get(m)) for m in metrics]
        table.add_row(*cells, end_section=row is ref)
    console.print(table)
    for row in report["rows"]:
        if "error" in row:
            console.print(f"[red]{row['codec']} failed:[/red] {row['error']}", highlight=False)
    console.print(f"codec training data: {report['training']}", highlight=False)
    console.print("Rates are counted from the archive written for each codec (payload = coded items; total = "
                  "whole file / items); float32 is the uncompressed 32 x width bits. (x%) = share of the "
                  "uncompressed figure. All metrics, R@5/R@10 included, are in the JSON.", highlight=False, style="dim")


def print_pixel_rows(rows: Sequence[dict[str, Any]], console: Console, title: str,
                     reference: dict[str, Any] | None = None) -> None:
    """Counted bpp per pixel codec and quality, with re-embedded metrics (and the uncompressed ones) when measured."""
    metrics = [m for m in TABLE_METRICS if any(m in r["metrics"] for r in rows)]
    table = Table(title=title)
    for col in ("codec", "quality", "bpp", "bits/image", *(METRIC_TITLES[m] for m in metrics)):
        table.add_column(col, justify="left" if col == "codec" else "right")
    if reference is not None and metrics:
        table.add_row("uncompressed", "-", "-", "-", *(_cell(reference["metrics"].get(m)) for m in metrics),
                      end_section=True)
    for r in rows:
        table.add_row(r["family"], str(r["quality"]), f"{r['bpp']:.4f}", f"{r['bits_per_item']:.0f}",
                      *(_cell(r["metrics"].get(m)) for m in metrics))
    console.print(table)


def print_ratios(ratios: Sequence[dict[str, Any]], metric: str, console: Console) -> None:
    """Bit rate of each semantic codec as a share of the cheapest pixel-codec quality at equal fidelity."""
    table = Table(title=f"Bit rate at equal {METRIC_TITLES.get(metric, metric)} (both rates counted)")
    for col in ("codec", "bpp", METRIC_TITLES.get(metric, metric), "pixel codec", "needs quality", "at bpp", "fraction"):
        table.add_column(col, justify="left" if col in ("codec", "pixel codec") else "right")
    for r in ratios:
        reached = r["pixel_bpp"] is not None
        table.add_row(r["codec"], f"{r['bpp']:.5f}", f"{r[metric]:.3f}", r["pixel_codec"],
                      str(r["pixel_quality"]) if reached else "none reached",
                      f"{r['pixel_bpp']:.4f}" if reached else "-",
                      (">=" if r["at_lowest_quality"] else "") + f"{100 * r['bitrate_fraction']:.2f}%" if reached else "-")
    console.print(table)
    if any(r["at_lowest_quality"] for r in ratios):
        console.print(">= : reached already at the lowest quality tried; a lower quality might reach it too, so the "
                      "fraction is a lower bound (add lower --qualities).", highlight=False, style="dim")


def write_json(data: Any, path: str | Path) -> None:
    with atomic_writer(path) as fh:
        fh.write(json.dumps(data, indent=2).encode())
