"""Search over a sharded collection in Ray workers against one process: identical top-k, both times.

Items: real CLIP ViT-B/32 image embeddings from ../shared/data plus Gaussian noise (relative size
0.5), re-normalised (as bench_search.py), written as 8 archive shards with one shared
`pq:M=32,K=256,opq=1` codec fitted on the real vectors; queries: 256 real Caltech-101 test images;
k = 10. The single-process path is `Collection.search` over the 8 shards; the Ray path is
`search_ray` (one task per shard, merge in the driver). On a 2-core machine no speed-up is expected:
8 tasks share 2 cores, and Ray adds its start-up and per-task overhead; the figure that matters is
that the results are identical.

    python benchmarks/bench_ray_search.py --items 400000 --workdir /tmp/semzip-bench-ray
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from bench_search import real_pool, synthesise  # noqa: E402
from _data import clip_data  # noqa: E402

from semzip.codecs import load_codec, make_codec, save_codec  # noqa: E402
from semzip.container import write_archive  # noqa: E402
from semzip.scale import local_runtime_env  # noqa: E402
from semzip.scale._search import search_ray  # noqa: E402
from semzip.search import Collection  # noqa: E402

SHARDS, K, QUERIES = 8, 10, 256


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=400_000)
    ap.add_argument("--workdir", type=Path, required=True, help="codec and shards are cached here")
    ap.add_argument("--data")
    args = ap.parse_args()

    import ray

    pool, queries = real_pool(clip_data(args.data))
    Q = queries[:QUERIES]
    args.workdir.mkdir(parents=True, exist_ok=True)
    codec_file = args.workdir / "pq32x8.smzc"
    if not codec_file.exists():
        save_codec(make_codec("pq:M=32,K=256,opq=1").fit(pool), codec_file)
    codec = load_codec(codec_file)
    per = -(-args.items // SHARDS)
    paths = [args.workdir / f"shard-{args.items}-{s}.smz" for s in range(SHARDS)]
    if not all(p.exists() for p in paths):
        X = synthesise(pool, args.items, seed=0)
        for s, p in enumerate(paths):
            part = X[s * per : (s + 1) * per]
            write_archive(p, codec, part, ids=[f"{s}/{j}" for j in range(len(part))], embed_codec=False)
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False, runtime_env=local_runtime_env())
    try:
        with Collection(paths, codec=codec) as coll:
            t = time.perf_counter()
            one = coll.search(Q, K)
            one_s = time.perf_counter() - t
            search_ray(coll, Q[:1], K)  # warm-up: worker processes start
            t = time.perf_counter()
            dist = search_ray(coll, Q, K)
            ray_s = time.perf_counter() - t
    finally:
        ray.shutdown()
    same = dist.ids == one.ids and dist.scores.tobytes() == one.scores.tobytes()
    result = {"items": args.items, "shards": SHARDS, "queries": len(Q), "k": K, "identical_top_k": same,
              "single_process_s": round(one_s, 3), "ray_s": round(ray_s, 3), "ray_over_single": round(ray_s / one_s, 2),
              "cpus": os.cpu_count()}
    print(json.dumps(result, indent=2))
    if not same:
        sys.exit("Ray search differs from the single-process search")


if __name__ == "__main__":
    main()
