"""Rate-fidelity of PQ-VAE against PQ with an OPQ rotation on real CLIP ViT-B/32 embeddings.

Train pool: imagenet_fewshot shots4 + food101 train + flowers/pets/dtd val (9113 vectors). Tests:
zero-shot top-1 on zeroshot_caltech101, nearest-centroid top-1 on flowers and pets test (centroids
from their uncompressed train split). Counted bits/item = 8 x bytes written by `encode` over all test
items; fixed = bits before entropy coding; estimated = mean -log2 p of the learned tables.

    python benchmarks/bench_pqvae.py            # 7 rate points per codec, ~16 to ~1024 bits
    python benchmarks/bench_pqvae.py --quick    # 32, 64 and 128 bits only
    python benchmarks/bench_pqvae.py --points 16 256 --only pqvae

Data folder: $SEMZIP_DATA, else <repo>/../shared/data.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from semzip.codecs import make_codec  # noqa: E402
from _data import clip_data  # noqa: E402  (benchmarks/ is on sys.path when run as a script)

#: (target bits, PQ-VAE spec, OPQ spec). PQ-VAE: 12-bit coarse stage + residual PQ-VAE.
POINTS = [
    (16, "pqvae:dim=16,K=16,grid=1,C=16,H=64,blocks=1,coarse=12", "pq:M=2,K=256,opq=1"),
    (32, "pqvae:dim=16,K=32,grid=2,C=16,H=64,blocks=1,coarse=12", "pq:M=4,K=256,opq=1"),
    (64, "pqvae:dim=8,K=64,grid=2,C=16,H=64,blocks=1,coarse=12", "pq:M=8,K=256,opq=1"),
    # From 128 bits on: the 64-bit network plus the residual stage. `bits` is the rate on held-out
    # training items; Caltech images, unlike the training pool, cost about 1.5x that.
    (128, "pqvae:dim=8,K=64,grid=2,C=16,H=64,blocks=1,coarse=12,bits=88", "pq:M=16,K=256,opq=1"),
    (256, "pqvae:dim=8,K=64,grid=2,C=16,H=64,blocks=1,coarse=12,bits=172", "pq:M=32,K=256,opq=1"),
    (512, "pqvae:dim=8,K=64,grid=2,C=16,H=64,blocks=1,coarse=12,bits=330", "pq:M=64,K=256,opq=1"),
    (1024, "pqvae:dim=8,K=64,grid=2,C=16,H=64,blocks=1,coarse=12,bits=640", "pq:M=128,K=256,opq=1"),
]
QUICK = (32, 64, 128)




class Tasks:
    """The train pool and the three test tasks."""

    def __init__(self, root: Path) -> None:
        load = lambda name: np.load(root / name)  # noqa: E731
        im, fo, fl, pe, dt = (load(f) for f in ("imagenet_fewshot.npz", "food101.npz", "oxford_flowers.npz",
                                                 "oxford_pets.npz", "dtd.npz"))
        f32 = lambda a: np.asarray(a, dtype=np.float32)  # noqa: E731
        self.train = f32(np.concatenate([im["shots4_features"], fo["train_features"], fl["val_features"],
                                         pe["val_features"], dt["val_features"]]))
        zs = load("zeroshot_caltech101.npz")
        self.zs = (f32(zs["image_features"]), f32(zs["text_features"]), zs["labels"])
        self.centroid = {}
        for name, ds in (("flowers", fl), ("pets", pe)):
            tl = ds["train_labels"]
            classes = np.unique(tl)
            C = np.stack([f32(ds["train_features"])[tl == c].mean(0) for c in classes])
            self.centroid[name] = (f32(ds["test_features"]), C / np.linalg.norm(C, axis=1, keepdims=True),
                                   classes, ds["test_labels"])

    def evaluate(self, codec) -> dict[str, float]:
        row: dict[str, float] = {}
        nbytes = items = 0
        est = []
        sets = {"zs": self.zs[0]} | {k: v[0] for k, v in self.centroid.items()}
        rec = {}
        for key, X in sets.items():
            data = codec.encode(X)
            nbytes += len(data)
            items += len(X)
            row[f"bits_{key}"] = 8 * len(data) / len(X)  # each task's own rate: images unlike the pool cost more
            est.append(codec.estimated_bits(X))
            rec[key] = codec.decode(data, len(X))
        row["counted"] = 8 * nbytes / items
        row["fixed"] = codec.fixed_bits
        row["estimated"] = float(np.concatenate(est).mean())
        _, T, y = self.zs
        row["zs"] = float(((rec["zs"] @ T.T).argmax(1) == y).mean())
        for name, (_, C, classes, y) in self.centroid.items():
            row[name] = float((classes[(rec[name] @ C.T).argmax(1)] == y).mean())
        return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="only the 32, 64 and 128-bit points")
    ap.add_argument("--points", type=int, nargs="+", help="only these target rates (from 16 32 64 128 256 512 1024)")
    ap.add_argument("--only", choices=("pqvae", "pq"), help="only this codec family")
    ap.add_argument("--threads", type=int, default=2, help="threads for training (torch and faiss)")
    ap.add_argument("--seed", type=int, default=0, help="training seed of every codec")
    args = ap.parse_args(argv)

    import faiss

    faiss.omp_set_num_threads(args.threads)
    tasks = Tasks(clip_data())
    wanted = set(args.points or (QUICK if args.quick else [p[0] for p in POINTS]))
    points = [p for p in POINTS if p[0] in wanted]
    print(f"train pool {tasks.train.shape[0]} x {tasks.train.shape[1]}; uncompressed: ", end="")
    ref = make_codec("f16").fit(tasks.train)
    r = tasks.evaluate(ref)
    print(f"zero-shot {r['zs']:.3f}, centroid flowers {r['flowers']:.3f}, pets {r['pets']:.3f} (f16)\n")
    header = (f"{'codec':66s} {'counted':>8s} {'fixed':>6s} {'est.':>7s} {'zs-cal (bits)':>15s} "
              f"{'cen-flo (bits)':>15s} {'cen-pet (bits)':>15s} {'fit s':>6s}")
    rows: dict[str, list[dict]] = {"pqvae": [], "pq": []}
    print(header)
    for _, *specs in points:
        for spec in specs:
            codec = make_codec(spec)
            if args.only and codec.name != args.only:
                continue
            codec.set_params(seed=args.seed)
            if codec.name == "pqvae":
                codec.threads, codec.progress = args.threads, False
            t0 = time.perf_counter()
            codec.fit(tasks.train)
            secs = time.perf_counter() - t0
            row = tasks.evaluate(codec) | {"spec": spec, "secs": secs}
            rows[codec.name].append(row)
            cells = " ".join(f"{row[k]:7.3f} ({row[f'bits_{k}']:5.1f})" for k in ("zs", "flowers", "pets"))
            print(f"{spec:66s} {row['counted']:8.1f} {row['fixed']:6.0f} {row['estimated']:7.1f} {cells} {secs:6.0f}",
                  flush=True)

    if len(rows["pq"]) >= 2:
        print("\nAt equal counted bits on each task's own images: OPQ accuracy linearly interpolated in")
        print("log2(bits) between its two nearest measured points (no extrapolation: '-' outside its range).")
        print(f"{'':5s}" + "".join(f"{t + ' bits':>11s} {'pqvae':>6s} {'opq':>6s}" for t in ("zs", "flo", "pet")))
        for i, row in enumerate(rows["pqvae"]):
            cells = []
            for key in ("zs", "flowers", "pets"):
                opq = sorted(rows["pq"], key=lambda r: r[f"bits_{key}"])
                lb = np.log2([r[f"bits_{key}"] for r in opq])
                x = np.log2(row[f"bits_{key}"])
                other = np.interp(x, lb, [r[key] for r in opq]) if lb[0] <= x <= lb[-1] else None
                cells.append(f"{row[f'bits_{key}']:11.1f} {row[key]:6.3f} {'-' if other is None else f'{other:.3f}':>6s}")
            print(f"{i + 1:5d}" + "".join(cells))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
