"""The README's headline table: counted bits per image against semantic fidelity on real CLIP embeddings.

Codecs are fitted once on a training pool that shares no image with the test sets (ImageNet 4-shot +
Food-101 train + Flowers/Pets/DTD val), then each test set is written to a real archive per codec (the
codec shared, as a model sent once would be) and decoded. Columns: zero-shot top-1 on Caltech-101
(the 46 classes with an LVIS name, text embeddings uncompressed) and nearest-centroid top-1 on Flowers
and Pets (centroids from the uncompressed train split). Rates are payload bits per image read from the
archives. Every codec with a training seed is fitted and measured once per --seeds (default 0,1,2);
the table gives mean +- sample standard deviation, the plot min-max error bars. Writes
bench_eval.json, bench_eval.png and headline.md to --out. The README's table: `make results`.

    python benchmarks/bench_eval.py --out out/bench_eval
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
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
    ap.add_argument("--seeds", default="0,1,2", help="training seeds, comma-separated (default 0,1,2)")
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
    seeds = [int(s) for s in args.seeds.split(",")]
    datasets = [load_dataset(folder / f"{name}.npz") for name, _, _ in TESTS]
    reports: list[dict] = []
    for seed in seeds:
        codecs, fit_s = [], []
        for spec in specs:
            start = time.perf_counter()
            codecs.append(fit_codec(spec, pool, seed=seed))
            fit_s.append(time.perf_counter() - start)
            console.print(f"  seed {seed}: fitted {codecs[-1].spec} in {fit_s[-1]:.1f} s", highlight=False)
        for i, ds in enumerate(datasets):
            rep = evaluate(ds, codecs)  # one row per codec, in order
            rep["training"] = f"{pool_name}; codec shared, not in total bits"
            for row, codec, seconds in zip(rep["rows"], codecs, fit_s):
                row["fit_seconds"] = round(seconds, 3)
                if "seed" in codec.get_params():
                    row["seed"] = seed
            if len(reports) <= i:
                reports.append(rep)
            else:
                reports[i]["rows"] += rep["rows"]
            print_report(rep, console)
        # codecs without a seed give the same figures at any seed: measured once
        specs = [spec for spec, c in zip(specs, codecs) if "seed" in c.get_params()]

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
    """One row per codec, over its seeds: payload bits/image (from the zero-shot archive) and each
    test's main metric, as mean, sample standard deviation and seed count."""
    out = [{"codec": "float32", "bits_per_image": reports[0]["reference"]["payload_bits_per_item"], "seeds": 1,
            **{label: rep["reference"]["metrics"][m] for rep, (_, m, label) in zip(reports, TESTS)}}]
    for codec in dict.fromkeys(row["codec"] for row in reports[0]["rows"]):
        groups = [[r for r in rep["rows"] if r["codec"] == codec] for rep in reports]
        entry = {"codec": codec, "bits_per_image": float(np.mean([r["payload_bits_per_item"] for r in groups[0]])),
                 "seeds": len(groups[0])}
        for rows, (_, m, label) in zip(groups, TESTS):
            values = [r["metrics"][m] for r in rows]
            entry[label] = float(np.mean(values))
            entry[f"{label} std"] = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
            entry[f"{label} bits"] = float(np.mean([r["payload_bits_per_item"] for r in rows]))
        out.append(entry)
    return out


def headline_markdown(rows: list[dict]) -> str:
    """The README table: each metric (mean +- std over seeds) with the payload bits/image counted on
    that test set's archive."""
    labels = [label for _, _, label in TESTS]
    lines = ["| codec | seeds | " + " | ".join(f"{label} (bits/image)" for label in labels) + " |",
             "| --- | --- | " + " | ".join("---" for _ in labels) + " |"]
    for r in rows:
        cells = [f"{r[label]:.3f}" + (f" ± {r[f'{label} std']:.3f}" if round(r.get(f"{label} std", 0), 3) else "")
                 + f" ({r.get(f'{label} bits', r['bits_per_image']):.0f})" for label in labels]
        lines.append(f"| {r['codec']} | {r['seeds']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
