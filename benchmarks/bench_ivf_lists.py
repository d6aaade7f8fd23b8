"""IVF lists from the codes' own first stage (`index --lists codes`) against k-means lists.

Codec `rq:M=8,K=256,beam=4` fitted on 6,000 vectors of the benchmark pool (ImageNet 4-shot and
Food-101 train, real CLIP ViT-B/32); items: the 2,465 Caltech-101 test images; queries: 400
Caltech-101 train images (not among the items); k = 10. Both indexes have 256 lists (k-means:
`nlist=256`; codes: rq's first codebook). Recall@10 is against the flat search on the same codes;
"scanned" is the mean number of items a query's probed lists hold.

    python benchmarks/bench_ivf_lists.py [--data DIR]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from _data import clip_data  # noqa: E402

from semzip.codecs import fit_codec  # noqa: E402
from semzip.container import Archive, write_archive  # noqa: E402
from semzip.search import Collection  # noqa: E402
from semzip.search._ivf import IVFSearcher, build_ivf  # noqa: E402
from semzip._validate import l2_normalize  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data")
    ap.add_argument("--nprobe", default="4,8,16,32")
    args = ap.parse_args()
    d = clip_data(args.data)
    pool = np.concatenate([np.load(d / "imagenet_fewshot.npz")["shots4_features"],
                           np.load(d / "food101.npz")["train_features"]]).astype(np.float32)
    caltech = np.load(d / "caltech101.npz")
    items = caltech["test_features"].astype(np.float32)
    Q = caltech["train_features"].astype(np.float32)[:400]
    start = time.perf_counter()
    codec = fit_codec("rq:M=8,K=256,beam=4", pool[np.random.default_rng(0).permutation(len(pool))[:6000]])
    print(f"rq:M=8,K=256,beam=4 fitted in {time.perf_counter() - start:.0f} s; {len(items)} items, {len(Q)} queries")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "a.smz"
        write_archive(path, codec, items)
        with Archive.open(path) as arc, Collection([arc]) as coll:
            flat = coll.search(Q, 10)
            print(f"{'lists':<7} {'nprobe':>6} {'recall@10':>9} {'scanned':>8} {'largest list':>12}")
            for lists in ("codes", "kmeans"):
                out = Path(tmp) / f"{lists}.ivf"
                build_ivf(arc, out, lists=lists, nlist=None if lists == "codes" else 256)
                s = IVFSearcher(arc, out)
                sizes = np.diff(s.offsets)
                order = np.argsort(-(l2_normalize(Q) @ s.centroids.T), axis=1, kind="stable")
                for nprobe in (int(p) for p in args.nprobe.split(",")):
                    got = s.search(Q, 10, nprobe=nprobe)
                    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got.ids, flat.ids)])
                    scanned = sizes[order[:, :nprobe]].sum(axis=1).mean()
                    print(f"{lists:<7} {nprobe:>6} {recall:>9.3f} {scanned:>8.0f} {sizes.max():>12}")


if __name__ == "__main__":
    main()
