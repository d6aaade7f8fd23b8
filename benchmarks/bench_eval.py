"""The README's headline table: counted bits per image against semantic fidelity on real CLIP embeddings.

Codecs are fitted once on a training pool that shares no image with the test sets (ImageNet 4-shot +
Food-101 train + Flowers/Pets/DTD val), then each test set is written to a real archive per codec (the
codec shared, as a model sent once would be) and decoded. Columns: zero-shot top-1 on Caltech-101
(the 46 classes with an LVIS name, text embeddings uncompressed) and nearest-centroid top-1 on Flowers
and Pets (centroids from the uncompressed train split). Rates are payload bits per image read from the
archives. Writes bench_eval.json, bench_eval.png and headline.md to --out.

    python benchmarks/bench_eval.py --out out/bench_eval
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from _data import clip_data  # noqa: E402  (benchmarks/ is on sys.path when run as a script)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

BASELINE = ("f16", "int8", "sign", "pq:M=32,K=256,opq=1", "pq:M=16,K=256,opq=1", "pq:M=8,K=256,opq=1")
TESTS = (("zeroshot_caltech101", "zs_top1", "zero-shot caltech"), ("oxford_flowers", "centroid_top1", "centroid flowers"),
         ("oxford_pets", "centroid_top1", "centroid pets"))




def codec_specs(extra: list[str]) -> list[str]:
    """The baselines, plus every other registered codec's example specs (pqvae, smic... once merged)."""
    from semzip.codecs import available_codecs, codec_class
    from semzip.eval.runner import split_specs
    from semzip.spec import parse_spec

    given = [s for text in extra for s in split_specs(text)]
    named = {parse_spec(s).name for s in given}
    specs = list(BASELINE)
    for name in available_codecs():
        if name not in {"f16", "int8", "sign", "pq"} and name not in named:
            specs += list(codec_class(name).example_specs)
    return specs + given


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="folder for bench_eval.json/.png and headline.md")
    ap.add_argument("--data", help="folder holding clip-vit-b-32/ (default: SEMZIP_DATA or ../shared/data)")
    ap.add_argument("--codecs", action="append", default=[],
                    help="extra specs (comma-separated, repeatable); replaces a registered codec's example specs")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1,
                    help="BLAS and faiss threads (default 1: OpenMP spin-waits thrash a shared 2-core machine)")
    args = ap.parse_args()

    import faiss
    from threadpoolctl import threadpool_limits

    faiss.omp_set_num_threads(args.threads)
    with threadpool_limits(args.threads):
        run(args)


def run(args: argparse.Namespace) -> None:
    from rich.console import Console

    from semzip.eval.datasets import load_dataset, load_reference_pool
    from semzip.eval.plot import plot_rate_fidelity
    from semzip.eval.report import print_report, write_json
    from semzip.codecs import fit_codec
    from semzip.eval.runner import evaluate

    console = Console(width=None if sys.stdout.isatty() else 140)
    folder = clip_data(args.data)
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    pool, pool_name = load_reference_pool(folder)
    console.print(f"training pool: {pool_name} = {len(pool)} vectors", highlight=False)

    specs = codec_specs(args.codecs)
    codecs, fit_s = [], {}
    for spec in specs:
        start = time.perf_counter()
        codec = fit_codec(spec, pool, seed=args.seed)
        codecs.append(codec)
        fit_s[str(codec.spec)] = time.perf_counter() - start  # rows name codecs by canonical spec
        console.print(f"  fitted {codec.spec} in {fit_s[str(codec.spec)]:.1f} s", highlight=False)

    reports = []
    for name, _, _ in TESTS:
        rep = evaluate(load_dataset(folder / f"{name}.npz"), codecs)
        rep["training"] = f"{pool_name}; codec shared, not in total bits"
        for row in rep["rows"]:
            row["fit_seconds"] = round(fit_s[row["codec"]], 3)
        reports.append(rep)
        print_report(rep, console)

    headline = headline_rows(reports)
    md = headline_markdown(headline)
    console.print(md, highlight=False, markup=False)
    elapsed = time.perf_counter() - t0
    write_json({"pool": pool_name, "pool_vectors": len(pool), "seconds": elapsed, "headline": headline,
                "reports": reports}, args.out / "bench_eval.json")
    (args.out / "headline.md").write_text(md + "\n")
    plot_rate_fidelity(reports, args.out / "bench_eval.png",
                       title="Semantic fidelity against counted rate (CLIP ViT-B/32, shared codecs)")
    console.print(f"wrote {args.out}/bench_eval.json, bench_eval.png, headline.md in {elapsed:.0f} s "
                  f"({args.threads} thread(s), {os.cpu_count()} cpus visible)", highlight=False)


def headline_rows(reports: list[dict]) -> list[dict]:
    """One row per codec: payload bits/image (from the zero-shot archive) and each test's main metric."""
    out = [{"codec": "float32", "bits_per_image": reports[0]["reference"]["payload_bits_per_item"],
            **{label: rep["reference"]["metrics"][m] for rep, (_, m, label) in zip(reports, TESTS)}}]
    for i, row in enumerate(reports[0]["rows"]):
        entry = {"codec": row["codec"], "bits_per_image": row["payload_bits_per_item"]}
        for rep, (_, m, label) in zip(reports, TESTS):
            r = rep["rows"][i]
            entry[label] = r["metrics"][m]
            entry[f"{label} bits"] = r["payload_bits_per_item"]
        out.append(entry)
    return out


def headline_markdown(rows: list[dict]) -> str:
    """The README table: each metric with the payload bits/image counted on that test set's archive."""
    labels = [label for _, _, label in TESTS]
    lines = ["| codec | " + " | ".join(f"{label} (bits/image)" for label in labels) + " |",
             "| --- | " + " | ".join("---" for _ in labels) + " |"]
    for r in rows:
        cells = [f"{r[label]:.3f} ({r.get(f'{label} bits', r['bits_per_image']):.0f})" for label in labels]
        lines.append(f"| {r['codec']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
