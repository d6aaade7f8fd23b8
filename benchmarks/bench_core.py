"""Core codecs: counted bits per image against accuracy (with the spread over training seeds), and
one-core encode/decode throughput with the batch API.

Codecs are fitted on the reference pool (ImageNet 4-shot + Food-101 train + Flowers/Pets/DTD val);
zero-shot top-1 on Caltech-101 (46 LVIS-named classes) and nearest-centroid top-1 on Flowers and Pets
test are measured through real shared-codec archives (`semzip.eval.evaluate`), so bits are counted
from the archives' payloads. Throughput: `encode` (quantisation + entropy coding) and `decode` of
100k vectors in one call each, BLAS and faiss limited to one thread, best of 3.

    python benchmarks/bench_core.py [--data DIR] [--seeds 3] [--codecs SPEC...] [--json out.json] [--quick]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import faiss
import numpy as np
from rich.console import Console
from rich.table import Table
from threadpoolctl import threadpool_limits

from semzip import make_codec
from semzip.eval import evaluate, load_dataset
from semzip.eval.datasets import load_reference_pool

CODECS = ["f16", "int8", "sign", "pq:M=64,K=256", "pq:M=32,K=256", "pq:M=16,K=256", "pq:M=8,K=256",
          "pq:M=32,K=256,opq=0"]
QUICK = ["f16", "sign", "pq:M=16,K=256"]
# faiss OPQ<M>,PQ<M>x8 on the same data (shared/data/README.md): fixed bits -> zero-shot Caltech top-1.
REFERENCE = {256: 0.880, 128: 0.805, 64: 0.704}
TASKS = (("zeroshot_caltech101", "zs_top1", "zero-shot caltech"), ("oxford_flowers", "centroid_top1", "centroid flowers"),
         ("oxford_pets", "centroid_top1", "centroid pets"))


def throughput(codec, X: np.ndarray) -> tuple[float, float]:
    """(encode, decode) vectors/s on one core; best of 3."""
    enc, dec = [], []
    for _ in range(3):
        t = time.perf_counter()
        data = codec.encode(X)
        enc.append(time.perf_counter() - t)
        t = time.perf_counter()
        codec.decode(data, len(X))
        dec.append(time.perf_counter() - t)
    return len(X) / min(enc), len(X) / min(dec)


def run(args: argparse.Namespace, console: Console) -> list[dict]:
    folder = args.data / "clip-vit-b-32"
    pool, pool_name = load_reference_pool(folder)
    console.print(f"training pool: {pool_name}", highlight=False)
    datasets = [load_dataset(folder / f"{name}.npz") for name, _, _ in TASKS]
    speed_set = np.tile(pool, (1 + args.speed_items // len(pool), 1))[: args.speed_items]
    rows = []
    for spec in args.codecs or (QUICK if args.quick else CODECS):
        trainable = make_codec(spec).get_params().get("seed") is not None
        runs = []
        for seed in range(args.seeds if trainable else 1):
            codec = make_codec(spec)
            if trainable:
                codec.set_params(seed=seed)
            t = time.perf_counter()
            codec.fit(pool)
            fit_s = time.perf_counter() - t
            reports = [evaluate(ds, [codec]) for ds in datasets]
            runs.append({"fit_s": fit_s, "codec": codec,
                         "bits": reports[0]["rows"][0]["payload_bits_per_item"],
                         **{label: rep["rows"][0]["metrics"][m] for rep, (_, m, label) in zip(reports, TASKS)}})
            if not rows:
                rows.append({"codec": "float32", "bits": 32.0 * pool.shape[1], "fixed": 32.0 * pool.shape[1],
                             **{label: rep["reference"]["metrics"][m] for rep, (_, m, label) in zip(reports, TASKS)}})
        first = runs[0]["codec"]
        row = {"codec": str(first.spec), "seeds": len(runs), "fixed": first.fixed_bits,
               "estimated": float(first.estimated_bits(datasets[0].items).mean()),
               "bits": float(np.mean([r["bits"] for r in runs])), "fit_s": float(np.mean([r["fit_s"] for r in runs]))}
        for _, _, label in TASKS:
            values = [r[label] for r in runs]
            row[label], row[f"{label} spread"] = float(np.mean(values)), float(np.ptp(values))
        row["encode_vps"], row["decode_vps"] = throughput(first, speed_set)
        rows.append(row)
        console.print(f"  {row['codec']}: {row['bits']:.1f} bits, zero-shot {row['zero-shot caltech']:.3f} "
                      f"(+-{row['zero-shot caltech spread'] / 2:.3f} over {len(runs)} seeds)", style="dim", highlight=False)
    return rows


def table(rows: list[dict], speed_items: int) -> Table:
    out = Table(title=f"semzip core codecs, real CLIP ViT-B/32 (throughput: {speed_items} vectors, one core)")
    for col in ("codec", "bits/img\ncounted", "fixed\nbits", "zero-shot\ncaltech", "faiss OPQ\nref", "centroid\nflowers",
                "centroid\npets", "encode\nvec/s", "decode\nvec/s", "fit s"):
        out.add_column(col, justify="left" if col == "codec" else "right")
    for r in rows:
        ref = REFERENCE.get(int(r["fixed"])) if r["codec"].endswith(",opq=1") else None
        cell = lambda label: f"{r[label]:.3f}" + (f" ±{r[label + ' spread'] / 2:.3f}" if r.get("seeds", 1) > 1 else "")  # noqa: E731
        out.add_row(r["codec"], f"{r['bits']:.1f}", f"{r['fixed']:.0f}", cell("zero-shot caltech"),
                    "-" if ref is None else f"{ref:.3f}", cell("centroid flowers"), cell("centroid pets"),
                    f"{r['encode_vps']:,.0f}" if "encode_vps" in r else "-",
                    f"{r['decode_vps']:,.0f}" if "decode_vps" in r else "-",
                    f"{r['fit_s']:.1f}" if "fit_s" in r else "-")
    return out


def main(argv: list[str] | None = None) -> int:
    here = Path(__file__).resolve().parents[1]
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=here.parent / "shared" / "data", help="folder holding clip-vit-b-32/")
    ap.add_argument("--seeds", type=int, default=3, help="training seeds per trainable codec (mean and ± half-range)")
    ap.add_argument("--speed-items", type=int, default=100_000)
    ap.add_argument("--codecs", nargs="+", help="specs to run instead of the default list")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--quick", action="store_true", help="three codecs, one seed, 20k vectors for throughput")
    args = ap.parse_args(argv)
    if args.quick:
        args.seeds, args.speed_items = 1, 20_000
    if not (args.data / "clip-vit-b-32").is_dir():
        print(f"real CLIP data not found under {args.data}", file=sys.stderr)
        return 2
    console = Console(width=None if sys.stdout.isatty() else 170)
    faiss.omp_set_num_threads(1)
    with threadpool_limits(1):
        rows = run(args, console)
    console.print(table(rows, args.speed_items))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
