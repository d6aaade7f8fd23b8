"""Images/s of `semzip embed` (embed_paths) against a bare loop calling the same model on the same images.

Timing: one process loads the model once, then alternates the two sides `--rounds` times on the same
images and batch size (paired rounds, so drifting load from other processes hits both alike); the
figure is the median over rounds of the per-round ratio. The bare loop decodes sequentially with Pillow,
applies the same model transform and calls the model per batch; semzip adds hashing, a cold cache (a
fresh file each round), thread-parallel decoding, failure handling and the progress bar. A warm-cache
re-run is timed too. Memory: each side then runs once in its own process for its peak RSS.
Without --weights the model is the real ViT-B-32 *architecture with random weights* (same compute;
no pretrained weights can be downloaded here), labelled as such in the output.

    python benchmarks/bench_embed.py --images 64 --batch-size 32 --rounds 5
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def make_images(folder: Path, n: int) -> None:
    """n distinct JPEGs cut from scikit-image's bundled photos (sides 300-640 px)."""
    import importlib.util

    from PIL import Image

    spec = importlib.util.find_spec("skimage")
    if spec is None:
        sys.exit("needs scikit-image for its bundled photos: pip install scikit-image")
    data = Path(next(iter(spec.submodule_search_locations))) / "data"
    photos = []
    for name in ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png"):
        with Image.open(data / name) as img:
            photos.append(img.convert("RGB"))
    for i in range(n):
        src = photos[i % len(photos)]
        k = i // len(photos)
        box = (k % 7, k % 5, src.width - (k % 11), src.height - (k % 3))  # distinct bytes per file
        src.crop(box).save(folder / f"img{i:05d}.jpg", quality=90)


def get_model(args):
    from semzip.embed import build_model, load_model
    from semzip.embed._backend import model_config, pretrained_config

    if args.weights:
        return load_model(args.model, weights=args.weights, device=args.device), args.model
    arch, tag = args.model.split(":")
    cfg = model_config(arch)
    if pretrained_config(arch, tag).get("quick_gelu"):
        cfg["quick_gelu"] = True
    return build_model(cfg, args.model, device=args.device), f"{arch} architecture, random weights"


def _cpu_seconds() -> float:
    """User + system CPU time of this process, all threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def bare(paths, model, batch_size):
    import numpy as np
    from PIL import Image

    from semzip.embed import to_pixels

    outs = []
    for s in range(0, len(paths), batch_size):
        batch = []
        for p in paths[s:s + batch_size]:
            with Image.open(p) as img:
                batch.append(to_pixels(img.convert("RGB"), model.preprocess))
        outs.append(model.encode_images(np.stack(batch)))
    return np.concatenate(outs)


def semzip(paths, model, batch_size, workers, cache):
    from semzip.embed import embed_paths

    return embed_paths(paths, model, batch_size=batch_size, workers=workers, cache=cache, progress=True)


def timed(fn, *a):
    cpu0, t0 = _cpu_seconds(), time.perf_counter()
    out = fn(*a)
    return out, time.perf_counter() - t0, _cpu_seconds() - cpu0


def child(args) -> dict:
    import numpy as np
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    paths = sorted(Path(args.folder).glob("*.jpg"))
    model, label = get_model(args)
    size = model.preprocess.image_size
    model.encode_images(np.zeros((args.batch_size, 3, size, size), np.float32))  # warm-up for both sides
    n = len(paths)
    with tempfile.TemporaryDirectory() as tmp:
        if args.side == "bare":
            bare(paths, model, args.batch_size)
            return {"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
        if args.side == "semzip":
            semzip(paths, model, args.batch_size, args.workers, Path(tmp) / "c.sqlite")
            return {"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
        rounds = []
        for r in range(args.rounds):
            cache = Path(tmp) / f"cache{r}.sqlite"
            ref, t_bare, c_bare = timed(bare, paths, model, args.batch_size)
            res, t_sz, c_sz = timed(semzip, paths, model, args.batch_size, args.workers, cache)
            _, t_warm, _ = timed(semzip, paths, model, args.batch_size, args.workers, cache)
            assert len(res.ids) == n and res.cached == 0 and np.allclose(res.features, ref, atol=1e-4)
            rounds.append({"bare_s": t_bare, "semzip_s": t_sz, "warm_s": t_warm, "bare_cpu_s": c_bare,
                           "semzip_cpu_s": c_sz})
            print(f"  round {r + 1}: bare {n / t_bare:6.2f} images/s, semzip {n / t_sz:6.2f} images/s "
                  f"(x{t_bare / t_sz:.3f}), warm cache {n / t_warm:8.1f} images/s; CPU ms/image bare "
                  f"{1000 * c_bare / n:6.1f}, semzip {1000 * c_sz / n:6.1f}", file=sys.stderr, flush=True)
    return {"rounds": rounds, "images": n, "model": label}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--model", default="ViT-B-32:openai")
    ap.add_argument("--weights", default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--side", choices=["timing", "bare", "semzip"], help=argparse.SUPPRESS)
    ap.add_argument("--folder", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.side:
        print(json.dumps(child(args)))
        return

    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        make_images(Path(tmp), args.images)
        base = [sys.executable, __file__, "--folder", tmp, "--batch-size", str(args.batch_size), "--model",
                args.model, "--device", args.device, "--threads", str(args.threads), "--rounds", str(args.rounds)]
        base += ["--weights", args.weights] if args.weights else []
        base += ["--workers", str(args.workers)] if args.workers else []
        out = {}
        for side in ("timing", "bare", "semzip"):
            proc = subprocess.run(base + ["--side", side], stdout=subprocess.PIPE, text=True,
                                  env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
            if proc.returncode != 0:
                sys.exit(f"{side} failed (rc {proc.returncode})")
            out[side] = json.loads(proc.stdout.strip().splitlines()[-1])
    rounds, n = out["timing"]["rounds"], out["timing"]["images"]
    ratio = statistics.median(r["bare_s"] / r["semzip_s"] for r in rounds)
    cpu_ratio = statistics.median(r["semzip_cpu_s"] / r["bare_cpu_s"] for r in rounds)
    print(f"\nmodel: {out['timing']['model']}, device {args.device}, {n} JPEGs, batch {args.batch_size}, "
          f"workers {args.workers or 'default'}, {os.cpu_count()} CPUs, torch threads {args.threads or 'default'}, "
          f"{args.rounds} paired rounds; load average {load_start:.1f} at start, {os.getloadavg()[0]:.1f} at end")
    for key, name in (("bare_s", "bare loop"), ("semzip_s", "semzip cold"), ("warm_s", "semzip warm")):
        print(f"{name:12s} median {n / statistics.median(r[key] for r in rounds):8.2f} images/s")
    print(f"peak RSS (own process each): bare {out['bare']['peak_rss_mib']:.0f} MiB, "
          f"semzip {out['semzip']['peak_rss_mib']:.0f} MiB")
    print(f"semzip cold / bare throughput, median of paired rounds: x{ratio:.3f} "
          f"({100 * (1 / ratio - 1):+.1f}% time per image; goal <= +10%); "
          f"CPU time per image x{cpu_ratio:.3f}")


if __name__ == "__main__":
    main()
