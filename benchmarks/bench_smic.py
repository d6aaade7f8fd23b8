"""SMIC against per-item codecs at equal amortised bits, on real CLIP ViT-B/32 embeddings.

Collections (each coded as one archive that embeds its codec, default ids):
  1k  = the 1366 zero-shot Caltech-101 test images (46 classes with an LVIS name)
  5k  = those plus a seeded sample of 3634 other images from the pool below
  all = the pool: zero-shot Caltech + Caltech val/train + ImageNet 4-shot + Flowers, Pets, DTD
        (test/val/train) + Food-101 train = 23823 images
Every codec is fitted on the collection it codes (the collection pays for its codec). Amortised bits
= 8 x archive file size / items, counted from the written file; `dict` is the embedded codec's share
and `payload` the coded items' share. Zero-shot top-1 is measured on the Caltech items inside the
collection (uncompressed: 0.966); nearest-centroid top-1 on the Flowers/Pets test items inside it,
with class centroids from the uncompressed train split.

    python benchmarks/bench_smic.py            # all three collections (several minutes)
    python benchmarks/bench_smic.py --quick    # 1k and 5k, fewer codecs
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from semzip import SemzipError  # noqa: E402
from semzip.codecs import fit_codec  # noqa: E402
from semzip.container import Archive, write_archive  # noqa: E402
from semzip.eval import cosine_to_reference, nearest_centroid_topk, zero_shot_topk  # noqa: E402
from _data import clip_data  # noqa: E402  (benchmarks/ is on sys.path when run as a script)

SMIC = ["smic:bits=16", "smic:bits=24", "smic:bits=32", "smic:bits=64,k=4,coef=3", "smic:cos=0.9,k=8,coef=3,dbits=2",
        "smic:atoms=1024,k=2,coef=4"]
PER_ITEM = ["pq:M=2,K=256,opq=0", "pq:M=4,K=256,opq=0", "pq:M=8,K=256,opq=1", "sign", "int8", "f16"]




def load_pool(folder: Path) -> dict:
    """All images with their source tag; tags: zs, other, flowers_test, pets_test."""
    z = np.load(folder / "zeroshot_caltech101.npz")
    parts = [("zs", z["image_features"], z["labels"])]
    cal = np.load(folder / "caltech101.npz")
    parts += [("other", cal[f"{s}_features"], cal[f"{s}_labels"]) for s in ("val", "train")]
    imnet = np.load(folder / "imagenet_fewshot.npz")
    parts.append(("other", imnet["shots4_features"], imnet["shots4_labels"]))
    centroids = {}
    for name, tag in (("oxford_flowers", "flowers"), ("oxford_pets", "pets"), ("dtd", "dtd")):
        f = np.load(folder / f"{name}.npz")
        parts.append((f"{tag}_test" if tag != "dtd" else "other", f["test_features"], f["test_labels"]))
        parts += [("other", f[f"{s}_features"], f[f"{s}_labels"]) for s in ("val", "train")]
        centroids[tag] = (f["train_features"].astype(np.float32), f["train_labels"])
    food = np.load(folder / "food101.npz")
    parts.append(("other", food["train_features"], food["train_labels"]))
    X = np.concatenate([p[1] for p in parts]).astype(np.float32)
    tags = np.concatenate([[p[0]] * len(p[1]) for p in parts])
    labels = np.concatenate([p[2] for p in parts]).astype(np.int64)
    return {"X": X, "tags": tags, "labels": labels, "text": z["text_features"].astype(np.float32), "train": centroids}


def collections(pool: dict, names: list[str]) -> dict[str, np.ndarray]:
    """Row indices of each collection; the zero-shot Caltech items always come first."""
    zs = np.flatnonzero(pool["tags"] == "zs")
    rest = np.flatnonzero(pool["tags"] != "zs")
    rng = np.random.default_rng(0)
    out = {"1k": zs, "5k": np.concatenate([zs, np.sort(rng.choice(rest, 5000 - len(zs), replace=False))]),
           "all": np.arange(len(pool["X"]))}
    return {k: out[k] for k in names}


def evaluate(pool: dict, rows: np.ndarray, Y: np.ndarray) -> dict[str, float | None]:
    tags, labels = pool["tags"][rows], pool["labels"][rows]
    zs = tags == "zs"
    out: dict[str, float | None] = {"zeroshot": zero_shot_topk(Y[zs], pool["text"], labels[zs])}
    for tag in ("flowers", "pets"):
        sel = tags == f"{tag}_test"
        tr, ytr = pool["train"][tag]
        out[tag] = nearest_centroid_topk(tr, ytr, Y[sel], labels[sel]) if sel.any() else None
    return out


def run(spec: str, pool: dict, rows: np.ndarray, workdir: Path, seed: int = 0) -> dict:
    X = pool["X"][rows]
    t0 = time.perf_counter()
    codec = fit_codec(spec, X, seed=seed)
    path = workdir / "bench.smz"
    write_archive(path, codec, X)
    seconds = time.perf_counter() - t0
    with Archive.open(path) as arc:
        info = arc.info()
        Y = arc.decode()
    n = info["items"]
    row = {"spec": spec, "seed": seed, "fitted": str(codec.spec), "items": n, "bits": info["total_bits"] / n,
           "dict": info["codec_bits"] / n, "payload": info["payload_bits"] / n,
           "cos": float(cosine_to_reference(Y, X).mean()), "seconds": seconds}
    row.update(evaluate(pool, rows, Y))
    return row


def fmt(v: float | None, spec: str = ".3f") -> str:
    return "-" if v is None else format(v, spec)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="1k and 5k collections, fewer codecs")
    ap.add_argument("--collections", nargs="*", default=None, help="subset of 1k 5k all")
    ap.add_argument("--specs", nargs="*", default=None, help="codec specs to run instead of the default list")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows here")
    ap.add_argument("--seeds", nargs="*", type=int, default=[0], help="training seeds of trainable codecs")
    args = ap.parse_args()
    pool = load_pool(clip_data())
    names = args.collections or (["1k", "5k"] if args.quick else ["1k", "5k", "all"])
    specs = args.specs or (["smic:bits=16", "smic:bits=32", "pq:M=2,K=256,opq=0", "sign"] if args.quick
                           else SMIC + PER_ITEM)
    ref = {name: evaluate(pool, rows, pool["X"][rows]) for name, rows in collections(pool, names).items()}
    rows_out = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, rows in collections(pool, names).items():
            r = ref[name]
            print(f"\n## collection {name}: {len(rows)} items; uncompressed zero-shot {r['zeroshot']:.3f}, "
                  f"centroid flowers {fmt(r['flowers'])}, pets {fmt(r['pets'])}\n", flush=True)
            print("| spec | fitted spec | bits/item | dict share | payload | cos | zero-shot | flowers | pets | fit+write s |")
            print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |", flush=True)
            for spec, seed in [(spec, seed) for spec in specs for seed in args.seeds]:
                label = spec if len(args.seeds) == 1 else f"{spec} (seed {seed})"
                try:
                    row = run(spec, pool, rows, Path(tmp), seed)
                except SemzipError as exc:  # e.g. a target the collection cannot meet
                    print(f"| `{label}` | refused: {exc} |", flush=True)
                    continue
                row["collection"] = name
                rows_out.append(row)
                print(f"| `{label}` | `{row['fitted']}` | {row['bits']:.1f} | {row['dict']:.1f} | {row['payload']:.1f} | "
                      f"{row['cos']:.3f} | {row['zeroshot']:.3f} | {fmt(row['flowers'])} | {fmt(row['pets'])} | "
                      f"{row['seconds']:.1f} |", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows_out, indent=2))


if __name__ == "__main__":
    main()
