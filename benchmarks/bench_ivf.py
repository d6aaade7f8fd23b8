"""IVF search on the codes against the flat scan and faiss IndexIVFPQFastScan at the same code size.

Items: real CLIP ViT-B/32 image embeddings from ../shared/data plus Gaussian noise (relative size
0.5), re-normalised (as bench_search.py), written to a memory-mapped file in the workdir so that
10M items (20 GB of float32) need no float copy in memory; queries: 256 real Caltech-101 test
images (not in the pool); k = 10; one thread. semzip, two codecs of 256 bits per item before ANS fitted on the real vectors:
`pq:M=32,K=256,opq=1` (scanned by faiss's IVF table scan) and `pq:M=64,K=16,opq=1,raw=1` (by faiss's
IVF fast-scan); `semzip index` with nlist lists, `search --nprobe P` (faiss's scan of semzip's codes
with the default shortlist re-scored, with a shortlist of 100, and the numpy scan of every probed item). faiss:
`IndexIVFPQFastScan` with the same nlist, M=64 x 4 bits (256 bits per item), trained on a sample
of 64 x nlist items (the semzip codecs are fitted on the real vectors, their lists on a sample of
32 x nlist decoded items), same nprobe.
Recall@10 of each is measured against its own exact search over its decoded vectors (semzip: the
flat search on the codes, checked equal to brute force on the decoded vectors; faiss: the same
index with nprobe = nlist), so both are judged on what their partition loses; the flat search is
checked against brute force on the decoded vectors up to 2M items (above, decoding every item
would take longer than the rest of the run). Queries/s per core from one batch of 256 queries,
median of 3 runs. Opening the IVF searcher is timed and its numpy memory traced (held and peak,
tracemalloc: faiss's own allocations are not seen). Items, archives, IVF indexes and the faiss index are kept in the workdir and
reused by a later run (which then reports no build time for what it reused).

    python benchmarks/bench_ivf.py --items 1000000 --workdir /tmp/semzip-bench-ivf
    python benchmarks/bench_ivf.py --items 10000000 --nlist 4096 --workdir /tmp/semzip-bench-ivf  # 20 GB of disk
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from bench_search import real_pool, synthesise  # noqa: E402
from _data import clip_data  # noqa: E402

from semzip.codecs import load_codec, make_codec, save_codec  # noqa: E402
from semzip.container import Archive, write_archive  # noqa: E402
from semzip.search import Collection  # noqa: E402
from semzip import SemzipError  # noqa: E402
from semzip.search._ivf import IVFSearcher, build_ivf, default_path, read_ivf  # noqa: E402

K = 10
#: 8-bit PQ (faiss's IVF table scan) and 4-bit PQ at the same 256 bits (faiss's IVF fast-scan).
SPECS = ("pq:M=32,K=256,opq=1", "pq:M=64,K=16,opq=1,raw=1")


def median_time(fn, repeat: int = 3):
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return out, float(np.median(times))


def recall(found, truth) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth)]))


def run_semzip(spec: str, pool: np.ndarray, X: np.ndarray, Q: np.ndarray, probes: list[int],
               args: argparse.Namespace) -> dict:
    """One codec: archive, index, flat search (checked against brute force) and the IVF searches."""
    out: dict = {}
    name = re.sub(r"[^A-Za-z0-9]+", "-", spec)
    codec_file = args.workdir / f"{name}.smzc"
    if not codec_file.exists():
        save_codec(make_codec(spec).fit(pool), codec_file)
    codec = load_codec(codec_file)
    path = args.workdir / f"{name}-{args.items}.smz"
    if not path.exists():
        t = time.perf_counter()
        write_archive(path, codec, X, embed_codec=False)
        print(f"wrote {path} in {time.perf_counter() - t:.0f} s", flush=True)
    with Archive.open(path, codec=codec) as arc:
        out["payload_bits_per_item"] = arc.info()["payload_bits_per_item"]
        try:  # an index of this archive and nlist from an earlier run is kept, as the archive is
            reused = read_ivf(default_path(path), arc)[0]["nlist"] == args.nlist
        except SemzipError:
            reused = False
        if not reused:
            t = time.perf_counter()
            build_ivf(arc, nlist=args.nlist, progress=False)
            out["index_build_s"] = round(time.perf_counter() - t, 1)
        out["index_reused"] = reused
        out["index_bytes"] = default_path(path).stat().st_size
        with Collection([arc]) as coll:
            flat, flat_s = median_time(lambda: coll.search(Q, K), repeat=1)
        if arc.items <= 2_000_000:
            R = arc.decode()
            Rn = R / np.linalg.norm(R, axis=1, keepdims=True)
            S = (Q / np.linalg.norm(Q, axis=1, keepdims=True)) @ Rn.T
            brute = np.argsort(-S, axis=1)[:, :K]
            del R, Rn, S
            out["flat_equals_brute_force"] = recall([p.tolist() for p in flat.positions], brute.tolist())
        out["flat_qps"] = round(len(Q) / flat_s, 1)
        tracemalloc.start()
        t = time.perf_counter()
        ivf = IVFSearcher(arc)
        out["ivf_load_s"] = round(time.perf_counter() - t, 1)
        held, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        out["ivf_open_mib"] = {"held": round(held / 2**20), "peak": round(peak / 2**20)}  # numpy's, not faiss's
        for kind, short in (("ivf", None), ("ivf_shortlist_100", 100), ("ivf_numpy_scan", 0)):
            rows = []
            for p in probes:
                got, s = median_time(lambda: ivf.search(Q, K, nprobe=p, shortlist=short))
                rows.append({"nprobe": p, "recall10": round(recall(got.ids, flat.ids), 4),
                             "qps": round(len(Q) / s, 1), "speedup_vs_flat": round(flat_s / s, 1)})
                print(json.dumps({spec: {kind: rows[-1]}}), flush=True)
            out[kind] = rows
    return out


def items(pool: np.ndarray, args: argparse.Namespace) -> np.ndarray:
    """The benchmark's items, memory-mapped from the workdir (made there on the first run)."""
    path = args.workdir / f"items-{args.items}.npy"
    if not path.exists():
        part = path.with_suffix(".part.npy")
        X = np.lib.format.open_memmap(part, mode="w+", dtype=np.float32, shape=(args.items, pool.shape[1]))
        synthesise(pool, args.items, seed=0, out=X)
        X.flush()
        del X
        part.rename(path)
    return np.load(path, mmap_mode="r")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--nlist", type=int, default=1024)
    ap.add_argument("--nprobe", default="4,8,16,32,64")
    ap.add_argument("--workdir", type=Path, required=True)
    ap.add_argument("--data")
    args = ap.parse_args()

    import faiss
    from threadpoolctl import threadpool_limits

    faiss.omp_set_num_threads(1)
    probes = [int(p) for p in args.nprobe.split(",")]
    pool, queries = real_pool(clip_data(args.data))
    Q = queries[:256]
    args.workdir.mkdir(parents=True, exist_ok=True)
    out: dict = {"items": args.items, "nlist": args.nlist, "queries": len(Q), "k": K, "threads": 1}
    with threadpool_limits(1):
        X = items(pool, args)
        for spec in SPECS:
            out[spec] = run_semzip(spec, pool, X, Q, probes, args)
        index_file = args.workdir / f"faiss-ivf{args.nlist}-pq64x4fs-{args.items}.index"
        out["faiss_reused"] = index_file.exists()
        if out["faiss_reused"]:
            index = faiss.read_index(str(index_file))
        else:
            quantizer = faiss.IndexFlatIP(X.shape[1])
            index = faiss.IndexIVFPQFastScan(quantizer, X.shape[1], args.nlist, 64, 4, faiss.METRIC_INNER_PRODUCT)
            t = time.perf_counter()
            sample = np.sort(np.random.default_rng(1).choice(len(X), size=min(len(X), 64 * args.nlist), replace=False))
            index.train(np.ascontiguousarray(X[sample]))
            for lo in range(0, len(X), 1 << 20):
                index.add(np.ascontiguousarray(X[lo : lo + (1 << 20)]))
            out["faiss_build_s"] = round(time.perf_counter() - t, 1)
            faiss.write_index(index, str(index_file))
        index.nprobe = args.nlist
        _, truth = index.search(Q, K)
        rows = []
        for p in probes:
            index.nprobe = p
            (_, I), s = median_time(lambda: index.search(Q, K))
            rows.append({"nprobe": p, "recall10": round(recall(I.tolist(), truth.tolist()), 4), "qps": round(len(Q) / s, 1)})
            print(json.dumps({"faiss": rows[-1]}), flush=True)
        out["faiss_ivfpq_fastscan_64x4"] = rows
    print(json.dumps(out, indent=2))
    (args.workdir / "bench_ivf.json").write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
