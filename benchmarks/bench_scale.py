"""Scale-out benchmark: items/s of `compress_sharded` (Ray Data) with 1 and 2 workers against the
single-process path, measured in the same run on the same inputs.

Encode only: every image embedding in ../shared/data/clip-vit-b-32 (pooled, float32, repeated
`--repeat` times to reach a size worth sharding), coded with a PQ codec fitted beforehand (the fit
is not timed). Single process = one `write_archive`, with BLAS's default threads and with one
(as each Ray worker runs: Ray sets OMP_NUM_THREADS=1); Ray = `compress_sharded` from the .npy into
shards. Images: `--images` small generated PNGs embedded with the tiny random test CLIP (24-d, 32 px
input), single process = `embed_paths` + `write_archive`, Ray = `compress_sharded` of the folder.
Each Ray figure is the wall time of the whole call (actor start-up, model load, shards, manifest)
with Ray already started; Ray's own start-up is printed apart. Outputs are checked equal.

    python benchmarks/bench_scale.py [--data ../shared/data] [--repeat 2] [--images 400] [--json out.json]

Figures from a shared or small machine are noisy: the script prints the core count and load average.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from semzip import make_codec, save_codec
from semzip.shards import ShardedArchive
from semzip.container import Archive, write_archive

TINY_CFG = {  # the embed tests' tiny CLIP: real architecture, random weights (timing only)
    "embed_dim": 24,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 48, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}


def pooled_embeddings(data: Path, repeat: int) -> np.ndarray:
    base = data / "clip-vit-b-32"
    parts = []
    for f in sorted(base.glob("*.npz")):
        with np.load(f) as z:
            parts += [z[k] for k in z.files if k.endswith("features") and not k.startswith("text") and z[k].ndim == 2]
    return np.tile(np.concatenate(parts).astype(np.float32), (repeat, 1))


def timed(fn):
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t0, time.process_time() - c0


def make_images(folder: Path, n: int) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    folder.mkdir()
    for i in range(n):
        h, w = int(rng.integers(48, 97)), int(rng.integers(48, 97))
        base = rng.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
        img = Image.fromarray(base).resize((w, h), Image.Resampling.BILINEAR)
        img.save(folder / f"img{i:05d}.png")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared" / "data")
    ap.add_argument("--repeat", type=int, default=2, help="times the pooled embeddings are repeated")
    ap.add_argument("--codec", default="pq:M=32,K=256,opq=0", help="fitted on 10000 rows, untimed (OPQ fits take minutes on a busy machine)")
    ap.add_argument("--shard-items", type=int, default=10_000)
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--image-shard-items", type=int, default=250)
    ap.add_argument("--rounds", type=int, default=2, help="every measurement is repeated, in turn, this many times")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    if not (args.data / "clip-vit-b-32").is_dir():
        print(f"real CLIP data not found under {args.data} (pass --data)", file=sys.stderr)
        return 2

    import ray
    import torch

    from semzip.embed import build_model, embed_paths
    from semzip.scale import compress_sharded, local_runtime_env

    rows: list[dict] = []
    load = os.getloadavg()
    print(f"machine: {os.cpu_count()} cores, load average {load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f} (1/5/15 min); "
          f"ray {ray.__version__}, torch {torch.__version__} ({torch.get_num_threads()} threads in the driver)")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        X = pooled_embeddings(args.data, args.repeat)
        np.save(tmp / "x.npy", X)
        codec, fit_s, _ = timed(lambda: make_codec(args.codec).fit(X[np.random.default_rng(0).choice(len(X), 10_000, replace=False)]))
        save_codec(codec, tmp / "codec.smzc")
        print(f"encode only: {len(X)} x {X.shape[1]} real CLIP embeddings ({len(X) // args.repeat} pooled, x{args.repeat}), "
              f"codec {codec.spec} fitted in {fit_s:.1f} s on 10000 (not timed below)")

        _, ray_start, _ = timed(lambda: ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False,
                                                 runtime_env=local_runtime_env()))
        print(f"ray.init (local, {os.cpu_count()} CPU slots): {ray_start:.1f} s, not counted below")
        want = None
        for rnd in range(args.rounds):
            for threads in (None, 1):  # BLAS default threads, and one thread like each Ray worker (OMP_NUM_THREADS=1)
                with threadpool_limits(threads):
                    _, wall, cpu = timed(lambda: write_archive(tmp / "one.smz", codec, X, embed_codec=False))
                rows.append({"task": "encode", "path": f"single, {threads or 'all'} thr", "workers": 1, "round": rnd,
                             "items": len(X), "wall_s": wall, "cpu_s": cpu})
            with Archive.open(tmp / "one.smz", codec=codec) as one:
                want = one.decode()
            for w in (1, 2):
                out = tmp / f"ray{w}-{rnd}"
                _, wall, cpu = timed(lambda: compress_sharded(str(tmp / "x.npy"), out, tmp / "codec.smzc", workers=w,
                                                              shard_items=args.shard_items))
                with ShardedArchive.open(out) as coll:
                    if not np.array_equal(coll.decode(), want):
                        raise RuntimeError("Ray output differs from the single-process archive")
                rows.append({"task": "encode", "path": "ray", "workers": w, "round": rnd, "items": len(X),
                             "wall_s": wall, "cpu_s": cpu})

        photos = tmp / "photos"
        make_images(photos, args.images)
        weights = tmp / "tiny"
        weights.mkdir()
        model = build_model(TINY_CFG, "ViT-B-32:tiny", seed=0)
        from safetensors.torch import save_file

        (weights / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY_CFG}))
        save_file({k: v.contiguous() for k, v in model.module.state_dict().items()}, str(weights / "open_clip_model.safetensors"))
        paths = sorted(photos.iterdir())
        print(f"images: {len(paths)} PNGs of 48-96 px per side, tiny random CLIP (24-d, 32 px input), codec sign")

        def single() -> np.ndarray:
            from semzip.embed import load_model

            clip = load_model("ViT-B-32:tiny", weights=weights)
            got = embed_paths(paths, clip, ids=[p.name for p in paths], progress=False)
            img_codec = make_codec("sign").fit(got.features)
            write_archive(tmp / "imgs.smz", img_codec, got.features, ids=got.ids, pixels=got.pixels, embed_codec=False)
            save_codec(img_codec, tmp / "sign.smzc")
            return got.features

        for rnd in range(args.rounds):
            _, wall, cpu = timed(single)
            rows.append({"task": "images", "path": "single, all thr", "workers": 1, "round": rnd, "items": len(paths),
                         "wall_s": wall, "cpu_s": cpu})
            for w in (1, 2):
                out = tmp / f"rayimg{w}-{rnd}"
                _, wall, cpu = timed(lambda: compress_sharded(str(photos), out, tmp / "sign.smzc", workers=w,
                                                              shard_items=args.image_shard_items, model="ViT-B-32:tiny",
                                                              weights=weights))
                with ShardedArchive.open(out) as coll:
                    if coll.items != len(paths):
                        raise RuntimeError(f"Ray wrote {coll.items} of {len(paths)} images")
                rows.append({"task": "images", "path": "ray", "workers": w, "round": rnd, "items": len(paths),
                             "wall_s": wall, "cpu_s": cpu})
        ray.shutdown()

    print(f"\n{'task':8} {'path':16} {'workers':>7} {'round':>5} {'items':>7} {'wall s':>8} {'items/s':>9} {'driver CPU s':>13}")
    for r in rows:
        r["items_per_s"] = r["items"] / r["wall_s"]
        print(f"{r['task']:8} {r['path']:16} {r['workers']:>7} {r['round']:>5} {r['items']:>7} {r['wall_s']:>8.2f} "
              f"{r['items_per_s']:>9.0f} {r['cpu_s']:>13.2f}")
    end = os.getloadavg()
    print("(driver CPU s: CPU time of this process only; Ray workers' CPU is not in it)")
    print(f"load average at the end: {end[0]:.1f}/{end[1]:.1f}/{end[2]:.1f}")
    if args.json:
        args.json.write_text(json.dumps({"load_average": load, "cores": os.cpu_count(), "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
