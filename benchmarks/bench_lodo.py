"""Leave-one-domain-out: every codec trained without the domain it is tested on, at equal counted bits.

Domains: Caltech-101, Flowers, Pets, DTD, Food-101, ImageNet few-shot. For each domain L, every codec
is fitted on the *fit* splits of the five others (the fold's pool) and tested on L:

| domain | fit split (in other folds' pools) | validation split | test task when left out |
| --- | --- | --- | --- |
| caltech | train | val (nearest centroid, train centroids) | zero-shot (46 classes) and nearest centroid on test |
| flowers | train | val | nearest centroid on test (train centroids) |
| pets | train | val | nearest centroid on test |
| dtd | val | - | nearest centroid on test (1-shot train centroids) |
| food | even rows of train | - | nearest centroid on odd rows (even-row centroids) |
| imagenet | 4-shot | - | nearest centroid on 4-shot (1-shot centroids) |

Centroids and class texts are float references, never compressed. Hyper-parameters: a codec with
variants (`bq`: D x b split, rotation, decoding weights) is chosen per fold by the mean validation
top-1 over the fold's held-in domains with a validation split; nothing is chosen on a test split.
Rates: semzip codecs are written to real archives and their payload bits per item read from the
file (`rq` with `budget_bits=B`); faiss codes are fixed-size (code bytes x 8), stated per method.

Methods at B bits per item (those that cannot reach B exactly are run at the largest rate <= B):
semzip `bq` (validation-chosen among `bq_variants`), `pq:M=B/8,K=256,opq=1`, `rq:M=B/8+B/32,K=256,beam=8` with budget B
(slow: --slow); stacks `pq+bq` (`pq:M=B/16,K=256,opq=1+bq:D=B/2,b=1`) and `bq+rq`
(`bq:D=3B/4,b=1+rq:M=B/32,K=256,beam=8`), fixed rate, run by --methods; `pqvae` (by --methods): the
README's PQ-VAE (`pqvae_spec`: 32 or 60 bits alone, above 64 followed by rq with budget B); faiss `OPQ{B/8}` + `PQ{B/8}x8`, `PCA{B-64},RaBitQ` (64 bits of per-vector factors,
B >= 128; deterministic, so one seed), `RQ{B/8}x8` with beam 32, `LSQ{B/8}x8` and `PRQ2x{B/16}x8`
(two halves of the dimensions, each RQ with beam 32) (slow: --slow).

    python benchmarks/bench_lodo.py [--rates 32,64,128,256] [--seeds 0,1,2] [--methods bq,pq,opq,rabitq]
                                    [--slow] [--results lodo.json] [--data DIR]
    python benchmarks/bench_lodo.py --report-only --results a.json --merge b.json c.json --markdown lodo.md

Results are appended to --results as they come (a rerun skips what is there), so slow methods can
run in a second process; the tables are printed from everything in the file.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from semzip.codecs import fit_codec
from semzip._threads import limited_threads
from semzip.container import Archive, write_archive
from semzip.eval.metrics import nearest_centroid_topk, zero_shot_topk

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _data import clip_data  # noqa: E402

DOMAINS = ("caltech", "flowers", "pets", "dtd", "food", "imagenet")
FAST = ("bq", "pq", "opq", "rabitq")
SLOW = ("rq", "faiss-rq", "lsq", "prq")
#: Stacks of stages at B bits (run with --methods): half the bits to pq, half to signs of what it
#: left; or three quarters to signs and the rest to residual quantisation of what they left.
STACKS = {"pq+bq": lambda B: f"pq:M={B // 16},K=256,opq=1+bq:D={B // 2},b=1",
          "bq+rq": lambda B: f"bq:D={3 * B // 4},b=1+rq:M={B // 32},K=256,beam=8"}
#: The README's PQ-VAE specs (their design chosen on Caltech, never on a left-out fold).
PQVAE_32 = "pqvae:dim=16,K=32,grid=2,C=16,H=64,blocks=1,coarse=12"
PQVAE_60 = "pqvae:dim=8,K=64,grid=2,C=16,H=64,blocks=1,coarse=12"


def pqvae_spec(B: int) -> tuple[str, float | None]:
    """The PQ-VAE at B bits, and the budget that holds it there: alone at 32 and 64 bits (fixed
    rate, the counted bits reported), above that followed by rq with budget B (`+rq` stages)."""
    if B < 64:
        return PQVAE_32, None
    if B < 128:
        return PQVAE_60, None
    return f"{PQVAE_60}+rq:M={(B - 64) // 8 + 4},K=256,beam=8", float(B)


def load_domains(folder: Path) -> dict[str, dict[str, Any]]:
    """Per domain: `fit` vectors, optional `val` (items, labels, centroids, centroid labels) and `tests`
    (task name -> (items, labels, centroids or class texts, centroid labels or None))."""
    def npz(name: str) -> dict[str, np.ndarray]:
        with np.load(folder / f"{name}.npz") as z:
            return {k: z[k] for k in z.files}

    out: dict[str, dict[str, Any]] = {}
    for name, file in (("caltech", "caltech101"), ("flowers", "oxford_flowers"), ("pets", "oxford_pets")):
        z = npz(file)
        out[name] = {"fit": z["train_features"], "val": (z["val_features"], z["val_labels"], z["train_features"], z["train_labels"]),
                     "tests": {f"{name} centroid": (z["test_features"], z["test_labels"], z["train_features"], z["train_labels"])}}
    zs = npz("zeroshot_caltech101")
    out["caltech"]["tests"] = {"caltech zero-shot": (zs["image_features"], zs["labels"], zs["text_features"], None),
                               **out["caltech"]["tests"]}
    z = npz("dtd")
    out["dtd"] = {"fit": z["val_features"], "val": None,
                  "tests": {"dtd centroid": (z["test_features"], z["test_labels"], z["train_features"], z["train_labels"])}}
    z = npz("food101")
    even, odd = slice(0, None, 2), slice(1, None, 2)
    out["food"] = {"fit": z["train_features"][even], "val": None,
                   "tests": {"food centroid": (z["train_features"][odd], z["train_labels"][odd],
                                               z["train_features"][even], z["train_labels"][even])}}
    z = npz("imagenet_fewshot")
    out["imagenet"] = {"fit": z["shots4_features"], "val": None,
                       "tests": {"imagenet centroid": (z["shots4_features"], z["shots4_labels"], z["shots1_features"], z["shots1_labels"])}}
    return out


def top1(task: tuple, Y: np.ndarray) -> float:
    items, labels, ref, ref_labels = task
    if ref_labels is None:
        return zero_shot_topk(Y, ref, labels, k=1)
    return nearest_centroid_topk(ref, ref_labels, Y, labels, k=1)


# ---- methods: each returns (decode function, counted bits per item) for a fitted model ----------------
def semzip_codec(spec: str, pool: np.ndarray, seed: int, budget: float | None = None):  # noqa: ANN201
    codec = fit_codec(spec, pool, seed=seed)

    def run(X: np.ndarray) -> tuple[np.ndarray, float]:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "a.smz"
            write_archive(path, codec, X, embed_codec=False, budget_bits=budget)
            with Archive.open(path, codec=codec) as arc:
                return arc.decode(), arc.info()["payload_bits_per_item"]

    return run


def faiss_codec(kind: str, B: int, pool: np.ndarray, seed: int):  # noqa: ANN201
    import faiss

    d, M = pool.shape[1], B // 8
    train = np.ascontiguousarray(pool)
    if kind == "opq":
        index = faiss.index_factory(d, f"OPQ{M},PQ{M}x8")
    elif kind == "rabitq":
        index = faiss.index_factory(d, f"PCA{B - 64},RaBitQ")
    else:
        if kind == "prq":  # two halves of the dimensions, each residual-quantised with M/2 stages
            q = faiss.ProductResidualQuantizer(d, 2, M // 2, 8)
            for i in range(2):
                half = faiss.downcast_Quantizer(q.subquantizer(i))
                half.max_beam_size = 32
                half.cp.seed = seed
        elif kind == "faiss-rq":
            q = faiss.ResidualQuantizer(d, M, 8)
            q.max_beam_size = 32
            q.cp.seed = seed
        else:
            q = faiss.LocalSearchQuantizer(d, M, 8)
            q.random_seed = seed
        q.verbose = False
        q.train(train)

        def run_q(X: np.ndarray) -> tuple[np.ndarray, float]:
            codes = q.compute_codes(np.ascontiguousarray(X))
            return q.decode(codes), 8.0 * codes.shape[1]

        return run_q
    if kind == "opq":
        faiss.downcast_index(index.index).pq.cp.seed = seed  # OPQ's own initialisation is fixed by faiss
    index.train(train)

    def run(X: np.ndarray) -> tuple[np.ndarray, float]:
        codes = index.sa_encode(np.ascontiguousarray(X))
        return index.sa_decode(codes), 8.0 * index.sa_code_size()

    return run


def bq_variants(B: int) -> list[str]:
    """bq specs of exactly B bits: b = 1 or 2 bits per coordinate, the same with a B/4 or B/8 leading
    coordinates at one bit more, each with and without RaBitQ's rotation (where allowed) and both
    decoding weights."""
    shapes = [(B, 1, 0), (B // 2, 2, 0), (3 * B // 4, 1, B // 4), (7 * B // 8, 1, B // 8)]
    out = []
    for D, b, top in shapes:
        for rotate in (0,) if top else (0, 1):
            for white in (0, 1):
                if D <= 512:
                    out.append(f"bq:D={D},b={b},rotate={rotate},white={white},top={top}")
    return out


def evaluate(method: str, B: int, fold: str, seed: int, domains: dict[str, dict[str, Any]]) -> dict[str, Any]:
    pool = np.concatenate([domains[n]["fit"] for n in DOMAINS if n != fold]).astype(np.float32)
    held_out = domains[fold]["tests"]
    start = time.perf_counter()
    chosen = None
    if method == "bq":
        vals = [domains[n]["val"] for n in DOMAINS if n != fold and domains[n]["val"] is not None]
        best = -1.0
        for spec in bq_variants(B):
            run = semzip_codec(spec, pool, seed)
            score = float(np.mean([top1(v, run(v[0])[0]) for v in vals]))
            if score > best:
                best, chosen, model = score, spec, run
    elif method == "pq":
        chosen = f"pq:M={B // 8},K=256,opq=1"
        model = semzip_codec(chosen, pool, seed)
    elif method == "rq":
        chosen = f"rq:M={B // 8 + B // 32},K=256,beam=8"
        model = semzip_codec(chosen, pool, seed, budget=float(B))
    elif method in STACKS:
        chosen = STACKS[method](B)
        model = semzip_codec(chosen, pool, seed)
    elif method == "pqvae":
        chosen, budget = pqvae_spec(B)
        model = semzip_codec(chosen, pool, seed, budget=budget)
    else:
        model = faiss_codec(method, B, pool, seed)
    out: dict[str, Any] = {"method": method, "bits": B, "fold": fold, "seed": seed, "spec": chosen, "tasks": {}}
    for task, data in held_out.items():
        Y, bits = model(data[0])
        out["tasks"][task] = {"top1": top1(data, Y), "bits_per_item": bits}
    out["seconds"] = time.perf_counter() - start
    return out


def key(r: dict[str, Any]) -> tuple:
    return r["method"], r["bits"], r["fold"], r["seed"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path)
    ap.add_argument("--rates", default="32,64,128,256")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--methods", default=",".join(FAST))
    ap.add_argument("--slow", action="store_true", help=f"also run {', '.join(SLOW)} (minutes per fit)")
    ap.add_argument("--results", type=Path, default=Path("lodo.json"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--merge", type=Path, nargs="*", default=[], help="more results files (other processes) for the tables")
    ap.add_argument("--markdown", type=Path, help="also write the tables as markdown here")
    ap.add_argument("--report-only", action="store_true", help="print the tables from the results files, run nothing")
    args = ap.parse_args()
    console = Console()
    domains = load_domains(clip_data(args.data))
    results = json.loads(args.results.read_text()) if args.results.exists() else []
    done = {key(r) for r in results}
    methods = [] if args.report_only else args.methods.split(",") + (list(SLOW) if args.slow else [])
    for method in methods:
        for B in map(int, args.rates.split(",")):
            if method == "rabitq" and B < 128:
                continue
            for seed in map(int, args.seeds.split(",")):
                if method == "rabitq" and seed != int(args.seeds.split(",")[0]):
                    continue  # PCA + RaBitQ draws nothing at random: one seed is all seeds
                for fold in DOMAINS:
                    if (method, B, fold, seed) in done:
                        continue
                    with limited_threads(args.threads):
                        row = evaluate(method, B, fold, seed, domains)
                    results.append(row)
                    args.results.write_text(json.dumps(results, indent=1))
                    scores = ", ".join(f"{t} {v['top1']:.3f} @ {v['bits_per_item']:.1f}" for t, v in row["tasks"].items())
                    console.print(f"{method} B={B} seed={seed} without {fold}: {scores} ({row['seconds']:.0f} s"
                                  + (f", {row['spec']}" if row["spec"] else "") + ")", style="dim", highlight=False)
    for extra in args.merge:
        seen = {key(r) for r in results}
        results += [r for r in json.loads(extra.read_text()) if key(r) not in seen]
    lines = report(results, console)
    if args.markdown:
        args.markdown.write_text("\n".join(lines) + "\n")


def report(results: list[dict[str, Any]], console: Console) -> list[str]:
    """Per rate: each method's left-out top-1 per task, mean +- spread over seeds, and the counted bits
    (printed, and returned as markdown lines). A method missing a fold shows '-' for it and no mean."""
    tasks = list(dict.fromkeys(t for r in results for t in r["tasks"]))
    lines: list[str] = []
    for B in sorted({r["bits"] for r in results}):
        rows = [r for r in results if r["bits"] == B]
        table = Table(title=f"leave-one-domain-out top-1 at <= {B} bits per item (mean over seeds, +- half range)")
        header = ["method", "seeds", "max bits", *tasks, "mean"]
        for col in header:
            table.add_column(col, justify="left" if col == "method" else "right")
        lines += [f"At <= {B} bits per item:", "", "| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
        for method in dict.fromkeys(r["method"] for r in rows):
            mine = [r for r in rows if r["method"] == method]
            cells, means = [], []
            for t in tasks:
                vals = [r["tasks"][t]["top1"] for r in mine if t in r["tasks"]]
                if vals:
                    means.append(float(np.mean(vals)))
                    cells.append(f"{np.mean(vals):.3f}" + (f" ±{(max(vals) - min(vals)) / 2:.3f}" if len(vals) > 1 else ""))
                else:
                    cells.append("-")
            bits = max(v["bits_per_item"] for r in mine for v in r["tasks"].values())
            seeds = len({r["seed"] for r in mine})
            complete = len(means) == len(tasks)
            row = [method, str(seeds), f"{bits:.1f}", *cells, f"{np.mean(means):.3f}" if complete else "-"]
            table.add_row(*row)
            lines.append("| " + " | ".join(row) + " |")
        console.print(table)
        lines.append("")
    return lines


if __name__ == "__main__":
    main()
