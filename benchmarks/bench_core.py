"""Core benchmark: counted bits per image against semantic accuracy, and one-core throughput.

Trains every baseline codec on the reference pool (ImageNet 4-shot + Food-101 train + Flowers,
Pets and DTD val), writes real shared-codec archives of the test sets, and measures zero-shot
top-1 on Caltech-101 (46 LVIS-named classes) and nearest-centroid top-1 on Flowers and Pets test
(centroids from their uncompressed train splits). Bits are counted from the archives' payloads.
Throughput uses the batch API on one core (BLAS and faiss limited to one thread).

    python benchmarks/bench_core.py [--data ../shared/data] [--json out.json] [--quick]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table
from threadpoolctl import threadpool_limits

from semzip import make_codec
from semzip.container import Archive, write_archive
from semzip.eval import nearest_centroid_topk, zero_shot_topk

CODECS = ["f16", "int8", "sign", "pq:M=64,K=256", "pq:M=32,K=256", "pq:M=16,K=256", "pq:M=8,K=256",
          "pq:M=16,K=256,opq=0"]
# faiss OPQ<M>,PQ<M>x8 on the same data (shared/data/README.md): fixed bits -> zero-shot Caltech top-1.
REFERENCE = {256: 0.880, 128: 0.805, 64: 0.704}


def load(data: Path) -> dict[str, np.ndarray]:
    base = data / "clip-vit-b-32"
    f = lambda name: np.load(base / name)  # noqa: E731
    inet, food, flowers, pets, dtd, zs = (f(n) for n in ("imagenet_fewshot.npz", "food101.npz", "oxford_flowers.npz",
                                                        "oxford_pets.npz", "dtd.npz", "zeroshot_caltech101.npz"))
    pool = np.concatenate([inet["shots4_features"], food["train_features"], flowers["val_features"],
                           pets["val_features"], dtd["val_features"]]).astype(np.float32)
    out = {"pool": pool, "zs_x": zs["image_features"], "zs_y": zs["labels"], "zs_t": zs["text_features"]}
    for name, d in (("flowers", flowers), ("pets", pets)):
        out[f"{name}_train_x"], out[f"{name}_train_y"] = d["train_features"], d["train_labels"]
        out[f"{name}_test_x"], out[f"{name}_test_y"] = d["test_features"], d["test_labels"]
    return {k: (v.astype(np.float32) if v.dtype == np.float16 else v) for k, v in out.items()}


def counted(codec, X: np.ndarray, tmp: Path) -> tuple[np.ndarray, float]:
    """Decoded vectors and payload bits/item, through a real shared-codec archive."""
    path = tmp / "bench.smz"
    write_archive(path, codec, X, embed_codec=False)
    with Archive.open(path, codec=codec) as arc:
        return arc.decode(), arc.info()["payload_bits_per_item"]


def throughput(codec, X: np.ndarray) -> tuple[float, float]:
    """(encode, decode) vectors/s with the batch API on one core; best of 3."""
    import faiss

    faiss.omp_set_num_threads(1)
    enc, dec = [], []
    with threadpool_limits(1):
        for _ in range(3):
            t = time.perf_counter()
            data = codec.encode(X)
            enc.append(time.perf_counter() - t)
            t = time.perf_counter()
            codec.decode(data, len(X))
            dec.append(time.perf_counter() - t)
    return len(X) / min(enc), len(X) / min(dec)


def main(argv: list[str] | None = None) -> int:
    here = Path(__file__).resolve().parents[1]
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=here.parent / "shared" / "data")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--quick", action="store_true", help="fewer codecs, 20k vectors for throughput")
    args = ap.parse_args(argv)
    if not (args.data / "clip-vit-b-32").is_dir():
        print(f"real CLIP data not found under {args.data}", file=sys.stderr)
        return 2
    d = load(args.data)
    codecs = CODECS[:4] + CODECS[5:6] if args.quick else CODECS
    speed_set = np.tile(d["pool"], (1 + 100_000 // len(d["pool"]), 1))[: 20_000 if args.quick else 100_000]
    console = Console(width=None if sys.stdout.isatty() else 160)
    rows = [{"codec": "float32", "bits": 32.0 * d["pool"].shape[1], "fixed": 32.0 * d["pool"].shape[1],
             "zs": zero_shot_topk(d["zs_x"], d["zs_t"], d["zs_y"]),
             **{n: nearest_centroid_topk(d[f"{n}_train_x"], d[f"{n}_train_y"], d[f"{n}_test_x"], d[f"{n}_test_y"])
                for n in ("flowers", "pets")}}]
    with tempfile.TemporaryDirectory() as tmp:
        for spec in codecs:
            t = time.perf_counter()
            codec = make_codec(spec).fit(d["pool"])
            fit_s = time.perf_counter() - t
            zs_dec, bits = counted(codec, d["zs_x"], Path(tmp))
            row = {"codec": str(codec.spec), "bits": bits, "fixed": codec.fixed_bits, "fit_s": fit_s,
                   "estimated": float(codec.estimated_bits(d["zs_x"]).mean()),
                   "zs": zero_shot_topk(zs_dec, d["zs_t"], d["zs_y"])}
            for n in ("flowers", "pets"):
                dec, _ = counted(codec, d[f"{n}_test_x"], Path(tmp))
                row[n] = nearest_centroid_topk(d[f"{n}_train_x"], d[f"{n}_train_y"], dec, d[f"{n}_test_y"])
            row["encode_vps"], row["decode_vps"] = throughput(codec, speed_set)
            rows.append(row)
            console.print(f"  {row['codec']}: {bits:.1f} bits, zero-shot {row['zs']:.3f}", style="dim")
    table = Table(title=f"semzip core codecs on real CLIP ViT-B/32 embeddings (throughput: {len(speed_set)} vectors, 1 core)")
    for col in ("codec", "bits/img\ncounted", "fixed\nbits", "zero-shot\ncaltech", "faiss OPQ\nref", "centroid\nflowers",
                "centroid\npets", "encode\nvec/s", "decode\nvec/s", "fit s"):
        table.add_column(col, justify="left" if col == "codec" else "right")
    for r in rows:
        ref = REFERENCE.get(int(r["fixed"])) if r["codec"].startswith("pq") and r["codec"].endswith("opq=1") else None
        table.add_row(r["codec"], f"{r['bits']:.1f}", f"{r['fixed']:.0f}", f"{r['zs']:.3f}",
                      "-" if ref is None else f"{ref:.3f}", f"{r['flowers']:.3f}", f"{r['pets']:.3f}",
                      f"{r['encode_vps']:,.0f}" if "encode_vps" in r else "-",
                      f"{r['decode_vps']:,.0f}" if "decode_vps" in r else "-",
                      f"{r['fit_s']:.1f}" if "fit_s" in r else "-")
    console.print(table)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
