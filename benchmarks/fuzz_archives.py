"""Long fuzz run of crafted archives and codec files with valid checksums (tests/crafted.py).

Each case takes a valid `.smz` (every codec family, embedded and shared codec) or `.smzc`, changes
one thing on purpose, fixes every CRC and hash up, and then opens it, describes it, verifies it and
decodes it, as `semzip info/verify/decompress` do. A case passes when it either works (finite
vectors of the declared shape) or raises semzip's own error. Counted per case: any other
exception (a crash), a case running past --timeout seconds (a hang: the worker is killed and
replaced), and its peak traced allocation (tracemalloc, which numpy reports to) against the file's
size. Cases are seeded by (--seed, case number), so a failing case is rerun with --only N.

    python benchmarks/fuzz_archives.py [--cases 100000] [--workers 2] [--timeout 5] [--json out.json] [--only N]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import time
import tracemalloc
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SPECS = ["f16", "int8", "sign", "pq:M=8,K=16,opq=1", "smic:atoms=16,k=2,coef=2,dbits=2,bits=0.0,cos=0.0",
         "smic:atoms=16,k=1,coef=0,dbits=2,bits=0.0,cos=0.0", "pqvae:dim=8,K=16,grid=2,C=16,H=16,blocks=1",
         "rq:M=4,K=16,beam=4"]
BOUND = 64  # stated bound: peak traced allocation <= BOUND x file size + 16 MiB (codec state, decode buffers)
SLACK = 16 << 20


def targets(folder: Path) -> list[tuple[str, str, bytes, Path | None]]:
    """(name, kind, valid bytes, shared codec file or None): one embedded and one shared-codec archive
    and one codec file per codec family."""
    from semzip import make_codec, save_codec
    from semzip.container import write_archive
    from tests.utils import unit_rows

    X = unit_rows(300, 64, seed=60)
    out = []
    for spec in SPECS:
        codec = make_codec(spec).fit(X)
        name = spec.split(":")[0] + ("" if ":" not in spec else f"[{len(out) // 3}]")
        codec_file = folder / f"{len(out)}.smzc"
        save_codec(codec, codec_file)
        for embed in (True, False):
            path = folder / "a.smz"
            write_archive(path, codec, X[:40], ids=[f"i{i}" for i in range(40)], block_items=16, embed_codec=embed)
            out.append((f"{name} {'embedded' if embed else 'shared'}", "archive", path.read_bytes(),
                        None if embed else codec_file))
        out.append((f"{name} codec", "codec", codec_file.read_bytes(), None))
    return out


def run_case(case: int, seed: int, target: tuple[str, str, bytes, Path | None], scratch: Path) -> tuple[str, int]:
    """Outcome ('ok', 'refused' or 'crash: Type: message') and the peak traced allocation in bytes."""
    from semzip import SemzipError, load_codec
    from semzip.container import Archive
    from tests.crafted import mutate, mutate_codec

    _, kind, valid, codec_file = target
    rng = np.random.default_rng([seed, case])
    data = mutate(rng, valid) if kind == "archive" else mutate_codec(rng, valid)
    path = scratch / ("case.smz" if kind == "archive" else "case.smzc")
    path.write_bytes(data)
    tracemalloc.start()
    try:
        if kind == "codec":
            codec = load_codec(path)
            X = np.eye(codec.n_features_in_, dtype=np.float32)[:4]
            Y = codec.decode(codec.encode(X), len(X))
            shape_ok = Y.shape == X.shape
        else:
            with Archive.open(path, codec=None if codec_file is None else load_codec(codec_file)) as arc:
                arc.info()
                arc.verify()
                Y = arc.decode()
                shape_ok = Y.shape == (arc.items, arc.dim)
        outcome = "ok" if shape_ok and np.isfinite(Y).all() else "crash: wrong shape or non-finite decode"
    except SemzipError:
        outcome = "refused"
    except Exception as exc:  # noqa: BLE001 - what the fuzzer counts
        outcome = f"crash: {type(exc).__name__}: {str(exc)[:120]}"
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return outcome, peak


def worker(conn: Any, seed: int, folder: str) -> None:
    """Run the cases the parent sends, one answer per case; the parent kills a worker that hangs."""
    import warnings

    warnings.simplefilter("ignore")
    folder_p = Path(folder)
    all_targets = [(n, k, (folder_p / f"t{i}.bin").read_bytes(), None if c == "" else Path(c))
                   for i, (n, k, c) in enumerate(json.loads((folder_p / "targets.json").read_text()))]
    scratch = folder_p / f"w{os.getpid()}"
    scratch.mkdir()
    for i, t in enumerate(all_targets):  # imports (torch for pqvae) and warm-up, before the clock runs
        run_case(10**9 + i, seed, t, scratch)
    conn.send("ready")
    while True:
        case = conn.recv()
        if case is None:
            return
        t = all_targets[case % len(all_targets)]
        start = time.perf_counter()
        outcome, peak = run_case(case, seed, t, scratch)
        conn.send((case, outcome, peak, len(t[2]), time.perf_counter() - start))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=100_000)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--timeout", type=float, default=5.0, help="Seconds after which a case counts as a hang.")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", type=int, help="Run one case in this process and print its outcome.")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    console = Console()
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        made = targets(folder)
        for i, (_, _, data, _) in enumerate(made):
            (folder / f"t{i}.bin").write_bytes(data)
        (folder / "targets.json").write_text(json.dumps([(n, k, "" if c is None else str(c)) for n, k, _, c in made]))
        if args.only is not None:
            t = made[args.only % len(made)]
            (folder / "solo").mkdir()
            console.print(t[0], run_case(args.only, args.seed, t, folder / "solo"))
            return
        summary = fuzz(args, folder, made, console)
    table = Table(title=f"{summary['cases']} crafted files, valid checksums ({args.workers} workers)")
    for key in ("cases", "ok", "refused", "crashes", "hangs", "slowest_s", "peak_mib", "worst_peak_over_size"):
        table.add_row(key, f"{summary[key]:.3g}" if isinstance(summary[key], float) else str(summary[key]))
    console.print(table)
    for outcome, n in summary["crash_kinds"].items():
        console.print(f"  {n} x {outcome} (e.g. --only {summary['crash_examples'][outcome]})")
    console.print(f"peak memory bound stated: {BOUND} x file size + {SLACK >> 20} MiB; cases over it: "
                  f"{summary['over_memory_bound']}")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))


def fuzz(args: argparse.Namespace, folder: Path, made: list, console: Console) -> dict[str, Any]:
    """Deal cases to workers, replacing any that hangs; return the counted summary."""
    ctx = mp.get_context("spawn")
    outcomes: Counter[str] = Counter()
    examples: dict[str, int] = {}
    hangs: list[int] = []
    per_target: dict[str, Counter[str]] = {name: Counter() for name, *_ in made}
    slowest, peak_max, worst_ratio, over = 0.0, 0, 0.0, 0
    workers: list[tuple[Any, Any, int | None, float]] = []

    def spawn() -> tuple[Any, Any, int | None, float]:
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=worker, args=(child, args.seed, str(folder)), daemon=True)
        proc.start()
        if not parent.poll(300) or parent.recv() != "ready":
            raise SystemExit("a fuzz worker did not start")
        return proc, parent, None, 0.0

    next_case = 0
    done = 0
    workers = [spawn() for _ in range(args.workers)]
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("fuzzing", total=args.cases)
        while done < args.cases:
            for w, (proc, conn, case, started) in enumerate(workers):
                if case is None and next_case < args.cases:
                    conn.send(next_case)
                    workers[w] = (proc, conn, next_case, time.perf_counter())
                    next_case += 1
                    continue
                if case is None:
                    continue
                if conn.poll(0.001):
                    got, outcome, peak, size, seconds = conn.recv()
                    key = outcome.split(":")[0] if outcome in ("ok", "refused") else outcome
                    outcomes[key] += 1
                    per_target[made[got % len(made)][0]][key.split(":")[0]] += 1
                    if outcome.startswith("crash"):
                        examples.setdefault(outcome, got)
                    slowest, peak_max = max(slowest, seconds), max(peak_max, peak)
                    worst_ratio = max(worst_ratio, peak / size)
                    over += peak > BOUND * size + SLACK
                    workers[w] = (proc, conn, None, 0.0)
                    done += 1
                    bar.advance(task)
                elif time.perf_counter() - started > args.timeout:
                    proc.kill()
                    proc.join()
                    hangs.append(case)
                    done += 1
                    bar.advance(task)
                    workers[w] = spawn()
        for proc, conn, _, _ in workers:
            conn.send(None)
            proc.join(timeout=10)
    crashes = sum(n for k, n in outcomes.items() if k.startswith("crash"))
    return {"cases": args.cases, "seed": args.seed, "timeout_s": args.timeout, "ok": outcomes["ok"],
            "refused": outcomes["refused"], "crashes": crashes, "hangs": len(hangs), "hang_cases": hangs[:20],
            "slowest_s": slowest, "peak_mib": peak_max / 2**20, "worst_peak_over_size": worst_ratio,
            "memory_bound": f"{BOUND} x file size + {SLACK >> 20} MiB", "over_memory_bound": over,
            "crash_kinds": {k: n for k, n in outcomes.items() if k.startswith("crash")}, "crash_examples": examples,
            "per_target": {k: dict(v) for k, v in per_target.items()}}


if __name__ == "__main__":
    main()
