"""Deleting items: tombstones in a sharded collection against rewriting one archive.

Items: real CLIP ViT-B/32 image embeddings from ../shared/data plus noise (as bench_ivf.py), coded
with `pq:M=32,K=256,opq=1` (fitted on the real vectors) twice: as one archive and as a sharded
collection written by `compress_sharded` (Ray, 2 workers, `--shard-items` per shard). Then `--change`
random items are deleted from both: `delete_items` rewrites the archive (every block copied, the
blocks holding a deleted item re-packed); `delete_from_collection` records tombstones in the
manifest and touches no shard. Printed: each delete's time, a flat search of `--queries` queries
before and after the delete on the collection (the cost of skipping tombstoned items), and the
purge (`semzip compact FOLDER`) that rewrites the shards holding them. Checked: the archive after
its delete and the collection after its tombstones give the same top-10 ids (same codes, same
order), and so does the collection after its purge. One thread per process.

    python benchmarks/bench_delete.py --items 1000000 --workdir /tmp/semzip-bench-delete
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from bench_ivf_update import timed  # noqa: E402
from bench_search import real_pool, synthesise  # noqa: E402
from _data import clip_data  # noqa: E402

from semzip.codecs import make_codec, save_codec  # noqa: E402
from semzip.compaction import purge_collection  # noqa: E402
from semzip.container import delete_items, write_archive  # noqa: E402
from semzip.scale import compress_sharded  # noqa: E402
from semzip.search import Collection  # noqa: E402
from semzip.shards import ShardedArchive, delete_from_collection  # noqa: E402

SPEC = "pq:M=32,K=256,opq=1"


def searched(paths: list[Path], Q: np.ndarray, codec) -> tuple[list[list[str]], float]:
    """Top-10 ids of a flat search (codes streamed from the files) and its time."""
    with Collection(paths, codec=codec) as coll:
        hits, seconds = timed(lambda: coll.search(Q, 10))
    return hits.ids, seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--shard-items", type=int, default=100_000)
    ap.add_argument("--change", type=int, default=1000, help="items deleted")
    ap.add_argument("--queries", type=int, default=64)
    ap.add_argument("--workdir", type=Path, required=True)
    ap.add_argument("--data")
    args = ap.parse_args()

    from threadpoolctl import threadpool_limits

    pool, queries = real_pool(clip_data(args.data))
    args.workdir.mkdir(parents=True, exist_ok=True)
    X = synthesise(pool, args.items, seed=0, out=np.lib.format.open_memmap(
        args.workdir / "x.npy", mode="w+", dtype=np.float32, shape=(args.items, pool.shape[1])))
    X.flush()
    one, folder = args.workdir / "one.smz", args.workdir / "coll"
    shutil.rmtree(folder, ignore_errors=True)
    out: dict = {"items": args.items, "shard_items": args.shard_items, "change": args.change, "codec": SPEC,
                 "queries": args.queries, "threads": 1}
    with threadpool_limits(1):
        codec = make_codec(SPEC).fit(pool)
        save_codec(codec, args.workdir / "codec.smzc")
        _, out["write_archive_s"] = timed(lambda: write_archive(one, codec, X, embed_codec=False))
    _, out["write_collection_s"] = timed(lambda: compress_sharded(str(args.workdir / "x.npy"), folder,
                                                                   args.workdir / "codec.smzc", workers=2,
                                                                   shard_items=args.shard_items))
    gone = [str(i) for i in np.random.default_rng(1).choice(args.items, args.change, replace=False)]
    Q = queries[: args.queries]
    shards = sorted(folder.glob("shard-*.smz"))
    with threadpool_limits(1):
        _, out["search_collection_before_s"] = searched(shards, Q, codec)
        _, out["delete_archive_s"] = timed(lambda: delete_items(one, gone, codec=codec))
        report, out["delete_collection_s"] = timed(lambda: delete_from_collection(folder, gone))
        out["shards_touched"] = report["shards_touched"]
        out["manifest_bytes"] = (folder / "manifest.json").stat().st_size
        want, _ = searched([one], Q, codec)
        with ShardedArchive.open(folder) as coll, Collection(coll.archives) as search:
            hits, out["search_collection_tombstones_s"] = timed(lambda: search.search(Q, 10))
        out["tombstones_equal_rewrite"] = hits.ids == want
        purged, out["purge_s"] = timed(lambda: purge_collection(folder))
        out["purge_rewrote_shards"] = purged["shards_rewritten"]
        with ShardedArchive.open(folder) as coll, Collection(coll.archives) as search:
            out["purged_equal_rewrite"] = search.search(Q, 10).ids == want
    out["rewrite_over_tombstone"] = round(out["delete_archive_s"] / max(out["delete_collection_s"], 1e-3), 1)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
