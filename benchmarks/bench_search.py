"""Compressed-domain search against decode-then-search, on 100k and 1M items around real CLIP vectors.

Items: real CLIP ViT-B/32 image embeddings from ../shared/data plus Gaussian noise, re-normalised
(so the collection has CLIP's geometry at a scale the shared data lacks). Queries: real Caltech-101
test image embeddings (not in the item pool). Codec: pq:M=32,K=256,opq=1 (256 bits/item before
entropy coding) fitted on the real pool; codec and archives are cached in --workdir.

For each size it measures, in one run:
  decode-then-search: `Archive.decode()` + float32 matmul + top-k (the baseline);
  stream: `Collection.search` reading blocks from the memory-mapped archive each call;
  preload: the same on codes unpacked once and kept in memory (build time reported apart);
then recall@10 of each against exact search on the decoded vectors, single-query latency, batched
throughput (queries/s) and peak traced memory (tracemalloc) per method. Every figure is measured.

Usage: python benchmarks/bench_search.py [--quick] [--sizes 100000 1000000] [--batch 256] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from semzip.codecs import load_codec, make_codec, save_codec  # noqa: E402
from semzip.container import Archive, write_archive  # noqa: E402
from semzip.search import Collection  # noqa: E402
from _data import clip_data  # noqa: E402  (benchmarks/ is on sys.path when run as a script)

SPEC = "pq:M=32,K=256,opq=1"
K = 10




def real_pool(d: Path) -> tuple[np.ndarray, np.ndarray]:
    """(item pool, queries): image embeddings from several sets; queries are Caltech-101 test images."""
    parts = [np.load(d / "imagenet_fewshot.npz")["shots4_features"], np.load(d / "food101.npz")["train_features"]]
    for name in ("oxford_flowers", "oxford_pets", "dtd"):
        z = np.load(d / f"{name}.npz")
        parts += [z["test_features"], z["val_features"]]
    pool = np.concatenate(parts).astype(np.float32)
    queries = np.load(d / "caltech101.npz")["test_features"].astype(np.float32)
    return pool, queries


def synthesise(pool: np.ndarray, n: int, seed: int = 0, noise: float = 0.5) -> np.ndarray:
    """n unit vectors: a random real vector plus isotropic noise of relative size `noise`, re-normalised."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, pool.shape[1]), np.float32)
    step = 65536
    for s in range(0, n, step):
        m = min(step, n - s)
        x = pool[rng.integers(len(pool), size=m)] + (noise / np.sqrt(pool.shape[1])) * rng.standard_normal((m, pool.shape[1]), dtype=np.float32)
        out[s : s + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def timed(fn, repeat: int = 1):
    """(result of the last call, median wall seconds, median CPU seconds, peak traced bytes of one call).

    CPU time (this process) is reported beside wall time because the machine is shared: other
    users' load stretches wall time but hardly this process's CPU time (one thread).
    """
    walls, cpus, peak = [], [], 0
    for _ in range(repeat):
        tracemalloc.start()
        c, t = time.process_time(), time.perf_counter()
        out = fn()
        walls.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
        peak = max(peak, tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    return out, float(np.median(walls)), float(np.median(cpus)), peak


def brute_topk(R: np.ndarray, Q: np.ndarray, k: int) -> np.ndarray:
    """Exact top-k positions by cosine on float32 vectors R (already unit rows or not: normalised here)."""
    S = Q @ R.T
    idx = np.argpartition(-S, k - 1, axis=1)[:, :k]
    return np.take_along_axis(idx, np.argsort(-np.take_along_axis(S, idx, axis=1), axis=1), axis=1)


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth)]))


def run_size(n: int, codec, pool: np.ndarray, queries: np.ndarray, batch: int, work: Path) -> dict:
    path = work / f"items{n}.smz"
    X = None
    if not path.exists():
        X = synthesise(pool, n, seed=n)
        t = time.perf_counter()
        write_archive(path, codec, X)
        print(f"  wrote {path} in {time.perf_counter() - t:.1f}s", flush=True)
    Qb = queries[:batch] / np.linalg.norm(queries[:batch], axis=1, keepdims=True)
    q1 = Qb[:1]
    out: dict = {"items": n, "batch": batch, "archive_bytes": path.stat().st_size}

    with Archive.open(path) as arc:
        # ---- baseline: decode everything, then brute force ----
        R, t_decode, c_decode, m_decode = timed(arc.decode)
        Rn = R / np.linalg.norm(R, axis=1, keepdims=True)
        _, t_mm1, c_mm1, _ = timed(lambda: brute_topk(Rn, q1, K), repeat=3)
        truth, t_mmb, c_mmb, m_mmb = timed(lambda: brute_topk(Rn, Qb, K))
        out["decode_s"], out["decode_cpu_s"], out["decode_peak_mb"] = t_decode, c_decode, m_decode / 2**20
        out["baseline_single_s"], out["baseline_single_cpu_s"] = t_decode + t_mm1, c_decode + c_mm1
        out["baseline_batch_s"], out["baseline_batch_cpu_s"] = t_decode + t_mmb, c_decode + c_mmb
        out["baseline_batch_qps"] = batch / out["baseline_batch_s"]
        out["baseline_peak_mb"] = (m_decode + R.nbytes + m_mmb) / 2**20  # decoded copy held while searching
        if X is not None:  # recall of exact search on the *decoded* vectors against the originals, for context
            out["decoded_vs_original_recall10"] = recall(truth, brute_topk(X, Qb, K))
        del R, Rn, X

        # ---- compressed domain, streaming blocks from the mmap each call ----
        coll = Collection([arc])
        _, t_s1, c_s1, m_s1 = timed(lambda: coll.search(q1, K), repeat=3)
        res, t_sb, c_sb, m_sb = timed(lambda: coll.search(Qb, K))
        out["stream_single_s"], out["stream_single_cpu_s"] = t_s1, c_s1
        out["stream_batch_s"], out["stream_batch_cpu_s"] = t_sb, c_sb
        out["stream_batch_qps"] = batch / t_sb
        out["stream_peak_mb"] = max(m_s1, m_sb) / 2**20
        out["stream_recall10"] = recall(res.positions, truth)

        # ---- compressed domain, codes unpacked once and kept in memory ----
        pre, t_build, c_build, m_build = timed(lambda: Collection([arc], preload=True))
        _, t_p1, c_p1, _ = timed(lambda: pre.search(q1, K), repeat=5)
        res, t_pb, c_pb, m_pb = timed(lambda: pre.search(Qb, K))
        out["preload_build_s"], out["preload_resident_mb"] = t_build, m_build / 2**20
        out["preload_single_s"], out["preload_single_cpu_s"] = t_p1, c_p1
        out["preload_batch_s"], out["preload_batch_cpu_s"] = t_pb, c_pb
        out["preload_batch_qps"] = batch / t_pb
        out["preload_search_peak_mb"] = m_pb / 2**20
        out["preload_recall10"] = recall(res.positions, truth)
        del pre, coll
    for mode in ("stream", "preload"):
        for kind in ("single", "batch"):
            out[f"speedup_{mode}_{kind}"] = out[f"baseline_{kind}_s"] / out[f"{mode}_{kind}_s"]
            out[f"speedup_{mode}_{kind}_cpu"] = out[f"baseline_{kind}_cpu_s"] / out[f"{mode}_{kind}_cpu_s"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--quick", action="store_true", help="100k items only")
    ap.add_argument("--batch", type=int, default=256, help="queries per batch for throughput")
    ap.add_argument("--threads", type=int, default=1, help="BLAS/OpenMP threads (1: comparable on a shared machine)")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/semzip-bench-search"))
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    sizes = [100_000] if args.quick else args.sizes

    import faiss
    from threadpoolctl import threadpool_limits

    faiss.omp_set_num_threads(args.threads)
    threadpool_limits(args.threads)
    args.workdir.mkdir(parents=True, exist_ok=True)
    pool, queries = real_pool(clip_data())
    codec_path = args.workdir / "pq32x8.smzc"
    if codec_path.exists():
        codec = load_codec(codec_path)
    else:
        t = time.perf_counter()
        codec = make_codec(SPEC).fit(pool)
        save_codec(codec, codec_path)
        print(f"fitted {SPEC} on {len(pool)} real vectors in {time.perf_counter() - t:.0f}s", flush=True)
    print(f"codec {codec.spec}; queries: {args.batch} real Caltech-101 image embeddings; k={K}; "
          f"threads={args.threads}; load average {os.getloadavg()[0]:.1f}", flush=True)
    results = []
    for n in sizes:
        print(f"\n== {n} items ==", flush=True)
        r = run_size(n, codec, pool, queries, args.batch, args.workdir)
        results.append(r)
        for key, value in r.items():
            print(f"  {key:32s} {value:.4g}" if isinstance(value, float) else f"  {key:32s} {value}", flush=True)
    print(f"\npeak RSS of the whole run: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
