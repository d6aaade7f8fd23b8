"""Compressed-domain search against decode-then-search, on 100k and 1M items around real CLIP vectors.

Items: real CLIP ViT-B/32 image embeddings from ../shared/data plus Gaussian noise, re-normalised
(so the collection has CLIP's geometry at a scale the shared data lacks). Queries: real Caltech-101
test image embeddings (not in the item pool). Codecs, both 256 bits/item before entropy coding and
fitted on the real pool: pq:M=32,K=256,opq=1 (ANS-coded 8-bit indices, scanned with float lookup
tables) and pq:M=64,K=16,opq=1,raw=1 (fixed-width 4-bit indices, searched through faiss fast-scan
with exact re-scoring). Codecs and archives (the same items for both) are cached in --workdir.

For each codec and size it measures, in one run:
  decode-then-search: `Archive.decode()` + float32 matmul + top-k (the baseline);
  stream: `Collection.search` reading blocks from the memory-mapped archive each call;
  preload: the same on codes unpacked once and kept in memory (build time reported apart);
then recall@10 of each against exact search on the decoded vectors, single-query latency, batched
throughput (queries/s), wall and CPU time, peak traced memory (tracemalloc: numpy, not faiss's C++
tables, whose sizes are read from the objects and printed apart) and counted bits/item (for the raw
codec also what the same codes cost ANS-coded). Every figure is measured.

Usage: python benchmarks/bench_search.py [--quick] [--sizes 100000 1000000] [--batch 256] [--threads 1]
       [--codecs pq32x8 pq64x4raw]
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

#: name -> spec; the name keys the cached codec and archive files in --workdir.
CODECS = {"pq32x8": "pq:M=32,K=256,opq=1", "pq64x4raw": "pq:M=64,K=16,opq=1,raw=1"}
#: For the raw codec: the same codec with ANS-coded indices, to count what raw=1 costs in bits.
ANS_OF = {"pq64x4raw": "pq:M=64,K=16,opq=1"}
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


def synthesise(pool: np.ndarray, n: int, seed: int = 0, noise: float = 0.5, out: np.ndarray | None = None) -> np.ndarray:
    """n unit vectors: a random real vector plus isotropic noise of relative size `noise`, re-normalised
    (into `out`, e.g. a memory-mapped file, when given: the same vectors for a seed either way)."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, pool.shape[1]), np.float32) if out is None else out
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


def held_mb(coll: Collection) -> float:
    """MiB held by a preloaded collection: its code and norm arrays, or its fast indexes (packed
    codes, faiss's own copy, the sample index), read from the objects."""
    total = 0
    for runs in coll._cache:
        for run in runs:
            if run.index is not None:
                total += fast_index_bytes(run.index)
            else:
                total += sum(v.nbytes for v in run.codes.values()) + (run.norms.nbytes if run.norms is not None else 0)
    return total / 2**20


def fast_index_bytes(index, faiss_only: bool = False) -> int:
    """Bytes of a fast index's code tables (faiss's alone with `faiss_only`), its sample's included."""
    own = index.index.codes.nbytes() + (0 if faiss_only else index.packed.nbytes)
    return own + (fast_index_bytes(index.sample, faiss_only) if index.sample is not None else 0)


def archive_path(work: Path, name: str, n: int) -> Path:
    return work / (f"items{n}.smz" if name == "pq32x8" else f"items{n}_{name}.smz")  # first name: older caches


def run_size(n: int, name: str, codec, pool: np.ndarray, queries: np.ndarray, batch: int, work: Path,
             ans=None) -> dict:
    path = archive_path(work, name, n)
    X = None
    if not path.exists():
        X = synthesise(pool, n, seed=n)
        t = time.perf_counter()
        write_archive(path, codec, X)
        print(f"  wrote {path} in {time.perf_counter() - t:.1f}s", flush=True)
    Qb = queries[:batch] / np.linalg.norm(queries[:batch], axis=1, keepdims=True)
    q1 = Qb[:1]
    out: dict = {"codec": str(codec.spec), "items": n, "batch": batch, "archive_bytes": path.stat().st_size}

    with Archive.open(path) as arc:
        out["bits_per_item"] = 8 * int(arc.index["nbytes"].sum()) / n  # block payloads, counted
        if ans is not None:  # the same codes, ANS-coded block by block as an archive would store them
            out["ans_bits_per_item"] = 8 * sum(len(ans.pack(codes)) for _, codes in arc.iter_codes()) / n
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
        res1, t_s1, c_s1, m_s1 = timed(lambda: coll.search(q1, K), repeat=3)
        res, t_sb, c_sb, m_sb = timed(lambda: coll.search(Qb, K))
        out["stream_single_s"], out["stream_single_cpu_s"] = t_s1, c_s1
        out["stream_batch_s"], out["stream_batch_cpu_s"] = t_sb, c_sb
        out["stream_batch_qps"] = batch / t_sb
        out["stream_peak_traced_mb"] = max(m_s1, m_sb) / 2**20
        out["stream_recall10"] = recall(np.concatenate([res1.positions, res.positions]), np.concatenate([truth[:1], truth]))

        # ---- compressed domain, codes unpacked once and kept in memory ----
        pre, t_build, c_build, m_build = timed(lambda: Collection([arc], preload=True))
        res1, t_p1, c_p1, _ = timed(lambda: pre.search(q1, K), repeat=5)
        res, t_pb, c_pb, m_pb = timed(lambda: pre.search(Qb, K))
        out["preload_build_s"], out["preload_build_cpu_s"] = t_build, c_build
        out["preload_held_mb"] = held_mb(pre)
        out["preload_single_s"], out["preload_single_cpu_s"] = t_p1, c_p1
        out["preload_batch_s"], out["preload_batch_cpu_s"] = t_pb, c_pb
        out["preload_batch_qps"] = batch / t_pb
        out["preload_search_peak_traced_mb"] = m_pb / 2**20
        out["preload_recall10"] = recall(np.concatenate([res1.positions, res.positions]), np.concatenate([truth[:1], truth]))
        runs = [r for r in pre._cache[0] if r.index is not None]
        if runs:  # what a streaming search holds outside tracemalloc: one run's faiss tables at a time
            out["stream_faiss_run_mb"] = max(fast_index_bytes(r.index, faiss_only=True) for r in runs) / 2**20
        del pre, coll
    for mode in ("stream", "preload"):
        for kind in ("single", "batch"):
            out[f"speedup_{mode}_{kind}"] = out[f"baseline_{kind}_s"] / out[f"{mode}_{kind}_s"]
            out[f"speedup_{mode}_{kind}_cpu"] = out[f"baseline_{kind}_cpu_s"] / out[f"{mode}_{kind}_cpu_s"]
    return out


def get_codec(name: str, spec: str, pool: np.ndarray, work: Path):
    path = work / f"{name}.smzc"
    if path.exists():
        return load_codec(path)
    t = time.perf_counter()
    codec = make_codec(spec).fit(pool)
    save_codec(codec, path)
    print(f"fitted {spec} on {len(pool)} real vectors in {time.perf_counter() - t:.0f}s", flush=True)
    return codec


def table(results: list[dict]) -> str:
    """The figures as a markdown table, one column per (codec, size)."""
    def f(x: float, unit: str = "s") -> str:
        return f"{x:.3g} {unit}".strip()

    def timed(key: str):  # wall seconds with CPU seconds beside
        return lambda r: f"{f(r[key + '_s'])} ({f(r[key + '_cpu_s'])} CPU)"

    def speedup(key: str):
        return lambda r: f"{r['speedup_' + key]:.1f}x ({r['speedup_' + key + '_cpu']:.1f}x)"

    cols = [(r["codec"], r["items"], r) for r in results]
    rows = [
        ("bits/item (counted)", lambda r: f"{r['bits_per_item']:.2f}" + (f" (ANS: {r['ans_bits_per_item']:.2f})" if "ans_bits_per_item" in r else "")),
        ("decode (`Archive.decode()`)", timed("decode")),
        ("**1 query**, decode-then-search", timed("baseline_single")),
        ("1 query, streaming", timed("stream_single")),
        ("1 query, preloaded", timed("preload_single")),
        ("**256 queries**, decode-then-search", timed("baseline_batch")),
        ("256 queries, streaming", timed("stream_batch")),
        ("256 queries, preloaded", timed("preload_batch")),
        ("speed-up streaming, 1 query: wall (CPU)", speedup("stream_single")),
        ("speed-up streaming, 256 queries: wall (CPU)", speedup("stream_batch")),
        ("speed-up preloaded, 1 query: wall (CPU)", speedup("preload_single")),
        ("speed-up preloaded, 256 queries: wall (CPU)", speedup("preload_batch")),
        ("recall@10 vs exact on decoded (stream / preload)", lambda r: f"{r['stream_recall10']:.3f} / {r['preload_recall10']:.3f}"),
        ("preload: build time, held in memory", lambda r: f"{f(r['preload_build_s'])}, {r['preload_held_mb']:.0f} MiB"),
        ("peak traced memory: decode-then-search / stream / preload search", lambda r: f"{r['baseline_peak_mb']:.0f} / {r['stream_peak_traced_mb']:.0f} / {r['preload_search_peak_traced_mb']:.0f} MiB"
         + (f" (+{r['stream_faiss_run_mb']:.0f} MiB faiss per run, streaming)" if "stream_faiss_run_mb" in r else "")),
    ]
    lines = ["| | " + " | ".join(f"`{c}` {n // 1000}k" for c, n, _ in cols) + " |", "| --- |" + " --- |" * len(cols)]
    lines += ["| " + label + " | " + " | ".join(fn(r) for _, _, r in cols) + " |" for label, fn in rows]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--quick", action="store_true", help="100k items only")
    ap.add_argument("--codecs", nargs="+", choices=sorted(CODECS), default=list(CODECS))
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
    codecs = {name: get_codec(name, CODECS[name], pool, args.workdir) for name in args.codecs}
    ans = {name: get_codec(f"{name}-ans", ANS_OF[name], pool, args.workdir) for name in args.codecs if name in ANS_OF}
    for name, other in ans.items():  # the same training, so the same codes: only their coding differs
        assert np.array_equal(other.get_state()["centroids"], codecs[name].get_state()["centroids"])
    print(f"codecs {', '.join(str(c.spec) for c in codecs.values())}; queries: {args.batch} real Caltech-101 "
          f"image embeddings; k={K}; threads={args.threads}; load average {os.getloadavg()[0]:.1f}", flush=True)
    results = []
    for n in sizes:
        for name, codec in codecs.items():
            print(f"\n== {codec.spec}, {n} items ==", flush=True)
            r = run_size(n, name, codec, pool, queries, args.batch, args.workdir, ans.get(name))
            results.append(r)
            for key, value in r.items():
                print(f"  {key:32s} {value:.4g}" if isinstance(value, float) else f"  {key:32s} {value}", flush=True)
    print(f"\nload average at the end {os.getloadavg()[0]:.1f}; "
          f"peak RSS of the whole run: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB\n")
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
