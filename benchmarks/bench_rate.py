"""The rate guarantee of `compress --codec rq --bits B`, and rq against faiss's residual quantiser at equal bits.

One `rq` codec (default `rq:M=32,K=256,beam=8`, library defaults, not tuned) is fitted on the
reference pool (ImageNet 4-shot + Food-101 train + Flowers/Pets/DTD val). For each budget B, real
archives are written with `budget_bits=B` from familiar and unfamiliar inputs (Caltech-101 test,
which the pool does not hold; Flowers, Pets and DTD test splits), random unit vectors and
CLIP text embeddings (LVIS names) used as inputs; the payload bits per item are read from each file.
Fidelity (zero-shot Caltech top-1, nearest-centroid Flowers and Pets top-1) is measured on the
decoded archives, beside faiss `ResidualQuantizer` with B/8 stages of 256 centroids and beam 32
(B bits fixed, no entropy coding) fitted on the same pool.

    python benchmarks/bench_rate.py [--data DIR] [--spec rq:M=32,K=256,beam=8] [--budgets 32,64,128,256] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from semzip import make_codec
from semzip.container import Archive, write_archive
from semzip.eval import load_dataset
from semzip.eval.datasets import load_reference_pool
from semzip.eval.runner import task_metrics

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _data import clip_data  # noqa: E402

TASKS = (("zeroshot_caltech101", "zs_top1", "zero-shot caltech"), ("oxford_flowers", "centroid_top1", "centroid flowers"),
         ("oxford_pets", "centroid_top1", "centroid pets"))
RATE_INPUTS = (("dtd", "test_features"),)


def faiss_rq(pool: np.ndarray, bits: int):  # noqa: ANN201 - a faiss object
    import faiss

    rq = faiss.ResidualQuantizer(pool.shape[1], bits // 8, 8)
    rq.max_beam_size = 32
    rq.verbose = False
    rq.train(pool)
    return rq


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path)
    ap.add_argument("--spec", default="rq:M=32,K=256,beam=8")
    ap.add_argument("--budgets", default="32,64,128,256")
    ap.add_argument("--random", type=int, default=5000, help="random unit vectors among the inputs")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    console = Console()
    folder = clip_data(args.data)
    budgets = [int(b) for b in args.budgets.split(",")]
    pool, described = load_reference_pool(folder)
    console.print(f"pool: {described}", highlight=False)
    tasks = [(load_dataset(folder / f"{name}.npz"), metric, label) for name, metric, label in TASKS]
    rng = np.random.default_rng(0)
    noise = rng.standard_normal((args.random, pool.shape[1])).astype(np.float32)
    inputs = {label.split()[-1]: ds.items for ds, _, label in tasks}
    for name, key in RATE_INPUTS:
        with np.load(folder / f"{name}.npz") as z:
            inputs[name] = z[key].astype(np.float32)
    with np.load(folder / "text_lvis.npz") as z:
        inputs["LVIS text"] = z["text_features"].astype(np.float32)
    inputs["random unit"] = noise / np.linalg.norm(noise, axis=1, keepdims=True)

    start = time.perf_counter()
    codec = make_codec(args.spec).fit(pool)
    fit_s = time.perf_counter() - start
    console.print(f"fitted {args.spec} on {len(pool)} vectors in {fit_s:.0f} s", highlight=False)
    rates: dict[int, dict[str, float]] = {}
    fidelity: dict[str, dict[int, dict[str, float]]] = {"rq": {}, "faiss RQ": {}}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "a.smz"
        for B in budgets:
            rates[B] = {}
            for name, X in inputs.items():
                t = time.perf_counter()
                write_archive(path, codec, X, budget_bits=B)
                with Archive.open(path) as arc:
                    rates[B][name] = arc.info()["payload_bits_per_item"]
                    if name in ("caltech", "flowers", "pets"):
                        ds, metric, label = next(t for t in tasks if t[2].endswith(name))
                        fidelity["rq"].setdefault(B, {})[label] = task_metrics(ds, arc.decode())[metric]
                console.print(f"  B={B} {name}: {rates[B][name]:.2f} bits/item ({time.perf_counter() - t:.1f} s)",
                              style="dim", highlight=False)
            rq = faiss_rq(pool, B)
            for ds, metric, label in tasks:
                Y = rq.decode(rq.compute_codes(np.ascontiguousarray(ds.items)))
                fidelity["faiss RQ"].setdefault(B, {})[label] = task_metrics(ds, Y)[metric]

    table = Table(title=f"payload bits per item written with budget_bits=B ({args.spec}, counted from each archive)")
    table.add_column("input")
    for B in budgets:
        table.add_column(f"B={B}", justify="right")
    for name in inputs:
        table.add_row(name, *(f"{rates[B][name]:.2f}" for B in budgets))
    table.add_row("max - B", *(f"{max(rates[B].values()) - B:+.2f}" for B in budgets))
    console.print(table)
    fid = Table(title="fidelity at equal bits (rq: counted payload <= B; faiss RQ: exactly B, beam 32)")
    fid.add_column("task")
    for B in budgets:
        fid.add_column(f"rq {B}", justify="right")
        fid.add_column(f"faiss {B}", justify="right")
    for _, _, label in tasks:
        fid.add_row(label, *(f"{fidelity[k][B][label]:.3f}" for B in budgets for k in ("rq", "faiss RQ")))
    console.print(fid)
    if args.json:
        args.json.write_text(json.dumps({"spec": args.spec, "fit_s": fit_s, "pool": described, "rates": rates,
                                         "fidelity": fidelity}, indent=2))


if __name__ == "__main__":
    main()
