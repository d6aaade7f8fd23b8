"""SIGKILL semzip's writers at random moments (tests/killing.py) and count what held.

Kills are spread over `compress` (over an existing archive), `append`, `compact`, `merge`, `delete`, and a
sharded collection's `delete` (tombstones) and `compact` (their purge), with
delays uniform over 1.2 x each command's uninterrupted run time (measured first), plus --ray-kills
kills of `compress --ray` (a 2-worker local Ray writing an 8-shard collection). After each: inputs
unchanged, the original intact or replaced by the complete result, outputs absent or complete,
and, when the original survived, the next run completes and leaves no temp of the dead writer.

    python benchmarks/kill_writers.py [--kills 400] [--ray-kills 10] [--seed 0] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests import killing  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=400)
    ap.add_argument("--ray-kills", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    console = Console()
    with tempfile.TemporaryDirectory() as tmp:
        base = killing.prepare(Path(tmp))
        work = Path(tmp) / "work"
        took = killing.durations(base, work)
        console.print("uninterrupted run times (s): " + ", ".join(f"{k} {v:.2f}" for k, v in took.items()))
        results: list[dict] = []
        with Progress(console=console, transient=True) as bar:
            task = bar.add_task("killing", total=args.kills + args.ray_kills)
            results += killing.campaign(base, work, args.kills, args.seed, report=lambda r: bar.advance(task))
            if args.ray_kills:
                killing.fresh(base, work)
                ray_took = killing.run_child(killing.argv(killing.RAY_OP, work), None)[1]
                rng = np.random.default_rng(args.seed + 1)
                for _ in range(args.ray_kills):
                    results.append(killing.kill_once(killing.RAY_OP, base, work, float(rng.uniform(0, 1.2 * ray_took))))
                    bar.advance(task)
    bad = killing.failures(results)
    table = Table(title=f"{len(results)} SIGKILLs at random moments")
    for col in ("command", "kills", "killed mid-run", "original kept", "replaced complete", "reruns clean", "failures"):
        table.add_column(col)
    summary = {}
    for op in (*killing.OPS, killing.RAY_OP):
        rows = [r for r in results if r["op"] == op]
        if not rows:
            continue
        outcomes = Counter(r["outcome"] for r in rows)
        clean = sum(r["rerun"] == "complete" and not r["temps_after_rerun"] for r in rows if r["outcome"] == "original")
        summary[op] = {"kills": len(rows), "killed_mid_run": sum(bool(r["killed"]) for r in rows),
                       "original": outcomes["original"], "complete": outcomes["complete"],
                       "reruns_clean": clean, "failures": sum(r in bad for r in rows)}
        table.add_row(op, *(str(v) for v in summary[op].values()))
    console.print(table)
    for r in bad[:10]:
        console.print(f"[red]failed[/red]: {r}")
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "failures": bad, "seed": args.seed}, indent=2))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
