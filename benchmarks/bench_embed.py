"""Images/s of `semzip embed` (embed_paths) against a bare loop calling the same model on the same images.

Both sides run in their own subprocess (so peak RSS is per side), interleaved, `--repeats` times each,
after the model is loaded (load time is excluded from both). The bare loop decodes sequentially with
Pillow, applies the same model transform and calls the model per batch; semzip adds hashing, the cache
(cold: a fresh file per run), thread-parallel decoding, failure handling and the progress bar.
Without --weights the model is the real ViT-B-32 *architecture with random weights* (same compute;
no pretrained weights can be downloaded here), labelled as such in the output.

    python benchmarks/bench_embed.py --images 128 --batch-size 32 --repeats 3
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


def make_images(folder: Path, n: int) -> list[Path]:
    """n distinct JPEGs cut from scikit-image's bundled photos (various sizes, 300-640 px sides)."""
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
    paths = []
    for i in range(n):
        src = photos[i % len(photos)]
        k = i // len(photos)
        box = (k % 7, k % 5, src.width - (k % 11), src.height - (k % 3))  # distinct bytes per file
        path = folder / f"img{i:05d}.jpg"
        src.crop(box).save(path, quality=90)
        paths.append(path)
    return paths


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
    """User + system CPU time of this process, all threads: less sensitive to other load than wall time."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_side(args) -> dict:
    import numpy as np
    import torch
    from PIL import Image

    from semzip.embed import embed_paths, to_pixels

    if args.threads:
        torch.set_num_threads(args.threads)
    paths = sorted(Path(args.folder).glob("*.jpg"))
    model, label = get_model(args)
    size = model.preprocess.image_size
    model.encode_images(np.zeros((args.batch_size, 3, size, size), np.float32))  # warm-up, both sides
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    cpu0 = _cpu_seconds()
    start = time.perf_counter()
    if args.side == "bare":
        outs = []
        for s in range(0, len(paths), args.batch_size):
            batch = []
            for p in paths[s:s + args.batch_size]:
                with Image.open(p) as img:
                    batch.append(to_pixels(img.convert("RGB"), model.preprocess))
            outs.append(model.encode_images(np.stack(batch)))
        n = sum(len(o) for o in outs)
        cached = 0
    else:
        with tempfile.TemporaryDirectory() as tmp:
            cache = Path(tmp) / "cache.sqlite"
            res = embed_paths(paths, model, batch_size=args.batch_size, workers=args.workers, cache=cache,
                              progress=True)
            n, cached = len(res.ids), res.cached
            if args.side == "semzip-warm":  # the same run again: every file is served by the cache
                start, cpu0 = time.perf_counter(), _cpu_seconds()
                res = embed_paths(paths, model, batch_size=args.batch_size, workers=args.workers, cache=cache,
                                  progress=True)
                n, cached = len(res.ids), res.cached
    seconds = time.perf_counter() - start
    cpu = _cpu_seconds() - cpu0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"side": args.side, "images": n, "cached": cached, "seconds": seconds, "images_per_s": n / seconds,
            "cpu_ms_per_image": 1000 * cpu / n,
            "peak_rss_mib": peak / 1024, "rss_before_run_mib": rss_before / 1024, "model": label}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--model", default="ViT-B-32:openai")
    ap.add_argument("--weights", default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--side", choices=["bare", "semzip", "semzip-warm"], help=argparse.SUPPRESS)
    ap.add_argument("--folder", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.side:
        print(json.dumps(run_side(args)))
        return

    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        make_images(Path(tmp), args.images)
        results: dict[str, list[dict]] = {"bare": [], "semzip": [], "semzip-warm": []}
        base = [sys.executable, __file__, "--folder", tmp, "--batch-size", str(args.batch_size), "--model",
                args.model, "--device", args.device, "--threads", str(args.threads)]
        if args.weights:
            base += ["--weights", args.weights]
        if args.workers:
            base += ["--workers", str(args.workers)]
        for rep in range(args.repeats):
            for side in ("bare", "semzip", "semzip-warm"):
                proc = subprocess.run(base + ["--side", side], capture_output=True, text=True,
                                      env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
                if proc.returncode != 0:
                    sys.exit(f"{side} failed:\n{proc.stderr[-2000:]}")
                results[side].append(json.loads(proc.stdout.strip().splitlines()[-1]))
                r = results[side][-1]
                print(f"  run {rep + 1} {side:12s} {r['images_per_s']:7.1f} images/s  "
                      f"{r['cpu_ms_per_image']:7.1f} CPU ms/image  peak RSS {r['peak_rss_mib']:.0f} MiB", flush=True)
    med = {k: statistics.median(r["images_per_s"] for r in v) for k, v in results.items()}
    cpu = {k: statistics.median(r["cpu_ms_per_image"] for r in v) for k, v in results.items()}
    peak = {k: max(r["peak_rss_mib"] for r in v) for k, v in results.items()}
    print(f"\nmodel: {results['bare'][0]['model']}, device {args.device}, {args.images} JPEGs, "
          f"batch {args.batch_size}, workers {args.workers or 'default'}, cpu count {os.cpu_count()}, "
          f"torch threads {args.threads or 'default'}, median of {args.repeats}, "
          f"load average {load_start:.1f} at start, {os.getloadavg()[0]:.1f} at end (other people's jobs share these cores)")
    for side in results:
        print(f"{side:12s} {med[side]:8.1f} images/s  {cpu[side]:8.1f} CPU ms/image   peak RSS {peak[side]:7.0f} MiB")
    print(f"semzip (cold cache) vs bare loop: wall time per image {100 * (med['bare'] / med['semzip'] - 1):+.1f}%, "
          f"CPU time per image {100 * (cpu['semzip'] / cpu['bare'] - 1):+.1f}% (goal: <= +10%)")


if __name__ == "__main__":
    main()
