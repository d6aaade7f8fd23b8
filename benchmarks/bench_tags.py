"""Tags that survive compression: tags@5 per codec and counted rate on real CLIP embeddings.

tags@5 = the mean share of an item's 5 nearest LVIS words (1,203 text embeddings, "a {name}") that
its compressed embedding keeps. Codecs are fitted once on the training pool (ImageNet 4-shot +
Food-101 train + Flowers/Pets/DTD val), shared, and each test set (Caltech-101, Flowers, Pets and
DTD test splits: none in the pool, nothing tuned on them) is written to a real archive and decoded;
bits are payload bits per image read from the archive. Writes bench_tags.json and bench_tags.md.

    python benchmarks/bench_tags.py --out out/bench_tags
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from _data import clip_data  # noqa: E402  (benchmarks/ is on sys.path when run as a script)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

CODECS = ("f16", "int8", "sign", "pq:M=32,K=256,opq=1", "pq:M=16,K=256,opq=1", "pq:M=8,K=256,opq=1",
          "rq:M=8,K=256,beam=8")
TESTS = ("caltech101", "oxford_flowers", "oxford_pets", "dtd")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--data", help="folder holding clip-vit-b-32/ (default: SEMZIP_DATA or ../shared/data)")
    ap.add_argument("--codecs", default=",".join(CODECS), help="comma-separated specs")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    import faiss
    import numpy as np
    from threadpoolctl import threadpool_limits

    from semzip.codecs import fit_codec
    from semzip.eval.datasets import EvalDataset, load_reference_pool
    from semzip.eval.runner import evaluate, split_specs

    faiss.omp_set_num_threads(args.threads)
    folder = clip_data(args.data)
    args.out.mkdir(parents=True, exist_ok=True)
    vocab = np.load(folder / "text_lvis.npz")["text_features"].astype(np.float32)
    t0 = time.perf_counter()
    with threadpool_limits(args.threads):
        pool, pool_name = load_reference_pool(folder)
        codecs = []
        for spec in split_specs(args.codecs):
            start = time.perf_counter()
            codecs.append(fit_codec(spec, pool, seed=0))
            print(f"fitted {spec} in {time.perf_counter() - start:.0f} s", flush=True)
        table = {}
        for name in TESTS:
            with np.load(folder / f"{name}.npz") as d:
                ds = EvalDataset(name=name, items=d["test_features"].astype(np.float32), tag_vocab=vocab)
            rep = evaluate(ds, codecs)
            table[name] = [{"codec": r["codec"], "bits": r["payload_bits_per_item"], "tags5": r["metrics"]["tags5"]}
                           for r in rep["rows"]]
    lines = ["| codec | " + " | ".join(f"{t} tags@5 (bits)" for t in TESTS) + " |",
             "| --- | " + " | ".join("---" for _ in TESTS) + " |"]
    for i, row in enumerate(table[TESTS[0]]):
        cells = [f"{table[t][i]['tags5']:.3f} ({table[t][i]['bits']:.0f})" for t in TESTS]
        lines.append(f"| {row['codec']} | " + " | ".join(cells) + " |")
    md = "\n".join(lines)
    print(md)
    elapsed = time.perf_counter() - t0
    (args.out / "bench_tags.md").write_text(md + "\n")
    (args.out / "bench_tags.json").write_text(json.dumps({"pool": pool_name, "seconds": elapsed, "tests": table}, indent=2))
    print(f"wrote {args.out}/bench_tags.json and bench_tags.md in {elapsed:.0f} s ({args.threads} thread(s))")


if __name__ == "__main__":
    main()
