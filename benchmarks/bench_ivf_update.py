"""An indexed archive changed by `append` and `delete`: the index carried over against rebuilding it.

Items: real CLIP ViT-B/32 image embeddings from ../shared/data plus noise (as bench_ivf.py), coded
with `pq:M=32,K=256,opq=1` (shared codec, fitted on the real vectors), indexed with `nlist` lists.
Then, on two copies of that archive, one with its index and one without: append `--change` new
items, then delete `--change` random items. Printed: the time of each change without an index, the
same change with `index_follows` carrying the index over (so the difference is the index's cost),
and a rebuild of the index after it (what a change cost before: k-means and every item decoded and
assigned again). Checked: the carried-over index is the one assigning every item afresh to the same
centroids gives, and the searcher accepts it. One thread.

    python benchmarks/bench_ivf_update.py --items 1000000 --workdir /tmp/semzip-bench-ivf-update
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from bench_search import real_pool, synthesise  # noqa: E402
from _data import clip_data  # noqa: E402

from semzip.codecs import make_codec  # noqa: E402
from semzip.container import Archive, append_archive, delete_items, write_archive  # noqa: E402
from semzip.search._ivf import IVFSearcher, _assign, build_ivf, default_path, index_follows, read_ivf  # noqa: E402

SPEC = "pq:M=32,K=256,opq=1"


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, round(time.perf_counter() - t, 3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--nlist", type=int, default=1024)
    ap.add_argument("--change", type=int, default=1000, help="items appended, then items deleted")
    ap.add_argument("--workdir", type=Path, required=True)
    ap.add_argument("--data")
    args = ap.parse_args()

    from threadpoolctl import threadpool_limits

    pool, _ = real_pool(clip_data(args.data))
    X = synthesise(pool, args.items + args.change, seed=0)
    args.workdir.mkdir(parents=True, exist_ok=True)
    plain, indexed = args.workdir / "plain.smz", args.workdir / "indexed.smz"
    out: dict = {"items": args.items, "nlist": args.nlist, "change": args.change, "codec": SPEC, "threads": 1}
    with threadpool_limits(1):
        codec = make_codec(SPEC).fit(pool)
        _, out["write_s"] = timed(lambda: write_archive(plain, codec, X[: args.items], embed_codec=False))
        shutil.copyfile(plain, indexed)
        with Archive.open(indexed, codec=codec) as arc:
            _, out["index_build_s"] = timed(lambda: build_ivf(arc, nlist=args.nlist))
        new = X[args.items :]
        _, out["append_s"] = timed(lambda: append_archive(plain, new, codec=codec))

        def follow(change):
            with index_follows(indexed, codec=codec) as report:
                change()
            assert report["status"] == "updated", report
            return report

        _, out["append_with_index_s"] = timed(lambda: follow(lambda: append_archive(indexed, new, codec=codec)))
        gone = [str(i) for i in np.random.default_rng(1).choice(args.items + args.change, args.change, replace=False)]
        _, out["delete_s"] = timed(lambda: delete_items(plain, gone, codec=codec))
        _, out["delete_with_index_s"] = timed(lambda: follow(lambda: delete_items(indexed, gone, codec=codec)))
        with Archive.open(indexed, codec=codec) as arc:
            head, arrays = read_ivf(default_path(indexed), arc)
            fresh = np.argsort(_assign(arc, arrays["centroids"], head), kind="stable")
            out["carried_index_equals_fresh_assignment"] = bool(np.array_equal(fresh, arrays["positions"]))
            out["searcher_accepts_it"] = IVFSearcher(arc).positions.shape[0] == arc.items
            out["updates"] = head["updates"]
            _, out["rebuild_after_change_s"] = timed(lambda: build_ivf(arc, nlist=args.nlist))
    for what in ("append", "delete"):
        extra = out[f"{what}_with_index_s"] - out[f"{what}_s"]
        out[f"{what}_index_cost_s"] = round(extra, 3)
        out[f"{what}_rebuild_over_index_cost"] = round(out["rebuild_after_change_s"] / max(extra, 1e-3), 1)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
