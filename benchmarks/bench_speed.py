"""Encode, decode and training speed of the codecs one core gives, at 64 and 256 bits per item.

Each codec is fitted on the reference pool (real CLIP embeddings), then encodes and decodes N vectors
(the pool repeated) through `encode` / `decode` (bytes in, bytes out) with one BLAS/faiss thread;
figures are vectors per second of wall time, best of --repeat runs. Training time is measured on
--train vectors: the pool plus its copies jittered by Gaussian noise (sigma 0.02, re-normalised),
since the shared data holds fewer than 100k real vectors; say so when quoting it.

    python benchmarks/bench_speed.py [--data DIR] [--n 20000] [--train 100000] [--specs S1;S2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from semzip._threads import limited_threads
from semzip.codecs import fit_codec
from semzip.eval.datasets import load_reference_pool

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _data import clip_data  # noqa: E402

SPECS = ("bq:D=64,b=1", "pq:M=8,K=256,opq=1", "rq:M=8,K=256,beam=8", "bq:D=256,b=1", "bq:D=128,b=2",
         "pq:M=32,K=256,opq=1")
GOALS = {"encode": 20_000, "decode": 100_000}


def jittered(pool: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    X = pool[rng.integers(len(pool), size=n)] + 0.02 * rng.standard_normal((n, pool.shape[1])).astype(np.float32)
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def best_of(repeat: int, fn) -> float:  # noqa: ANN001
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path)
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--train", type=int, default=100_000, help="training vectors for the fit timing (0: skip)")
    ap.add_argument("--specs", default=";".join(SPECS))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    console = Console()
    pool, _ = load_reference_pool(clip_data(args.data))
    X = np.ascontiguousarray(np.resize(pool, (args.n, pool.shape[1])))
    big = jittered(pool, args.train) if args.train else None
    rows = []
    with limited_threads(1):
        for spec in args.specs.split(";"):
            codec = fit_codec(spec, pool)
            data = codec.encode(X)
            enc = best_of(args.repeat, lambda: codec.encode(X))  # noqa: B023
            dec = best_of(args.repeat, lambda: codec.decode(data, len(X)))  # noqa: B023
            row = {"spec": spec, "bits_per_item": 8 * len(data) / len(X), "encode_per_s": len(X) / enc,
                   "decode_per_s": len(X) / dec}
            if big is not None:
                start = time.perf_counter()
                fit_codec(spec, big)
                row["train_s"] = time.perf_counter() - start
            rows.append(row)
            console.print(f"{spec}: {row}", style="dim", highlight=False)
    table = Table(title=f"one core, {args.n} vectors, best of {args.repeat} (goals: encode >= 20k/s, decode >= 100k/s"
                        + (f", training on {args.train} vectors < 600 s)" if big is not None else ")"))
    for col in ("codec", "bits/item", "encode /s", "decode /s", *(("train s",) if big is not None else ())):
        table.add_column(col, justify="left" if col == "codec" else "right")
    for r in rows:
        marks = {k: "" if r[f"{k}_per_s"] >= GOALS[k] else " (below goal)" for k in GOALS}
        table.add_row(r["spec"], f"{r['bits_per_item']:.1f}", f"{r['encode_per_s']:,.0f}{marks['encode']}",
                      f"{r['decode_per_s']:,.0f}{marks['decode']}",
                      *((f"{r['train_s']:.0f}" + ("" if r["train_s"] < 600 else " (over 600)"),) if big is not None else ()))
    console.print(table)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
