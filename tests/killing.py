"""SIGKILL at random moments in semzip's writers, and what must hold afterwards.

A child process imports the CLI, says it is ready, and runs one writing command (compress over an
existing archive, append, compact, merge, delete; delete from a sharded collection, which writes
tombstones, and compact of a collection, which purges them); the parent kills it with SIGKILL after a random delay
drawn over the command's uninterrupted run time. Afterwards every original must be intact (byte
for byte, or replaced by the complete result) and every output absent or complete; the next
uninterrupted run of the same command must succeed and leave no temp file of the dead writer.
Used by tests/test_atomic.py (a few kills) and benchmarks/kill_writers.py (hundreds).
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

CHILD = "import sys; from semzip.cli import main; print('ready', flush=True); sys.exit(main(sys.argv[1:]))"
OPS = ("compress", "append", "compact", "merge", "delete", "delete-coll", "purge")
RAY_OP = "ray"  # compress --ray into a sharded collection: slow to start, so run apart from OPS


def prepare(folder: Path, items: int = 20_000) -> Path:
    """Inputs and original archives in `folder/base`: x.npy, more.npy, pq.smzc, a.smz, b.smz, old.smz,
    gone.txt (every third id of a.smz, for delete), and x as collections of 8 shards: coll/ and
    tomb/ (the same with gone.txt's items deleted: tombstones to purge)."""
    from semzip import make_codec, save_codec
    from semzip.container import write_archive
    from semzip.shards import delete_from_collection

    from .utils import unit_rows, write_collection

    base = folder / "base"
    base.mkdir(parents=True)
    X = unit_rows(items, 64, seed=70)
    np.save(base / "x.npy", X)
    np.save(base / "more.npy", unit_rows(items // 2, 64, seed=71))
    codec = make_codec("pq:M=8,K=16,opq=0").fit(X[:2000])
    save_codec(codec, base / "pq.smzc")
    write_archive(base / "a.smz", codec, X, ids=[f"a{i}" for i in range(items)])
    write_archive(base / "b.smz", codec, X[: items // 2], ids=[f"b{i}" for i in range(items // 2)])
    write_archive(base / "old.smz", make_codec("sign").fit(X[:100]), X[:100])
    (base / "gone.txt").write_text("\n".join(f"a{i}" for i in range(0, items, 3)))
    for name in ("coll", "tomb"):
        write_collection(base / name, codec, X, [f"a{i}" for i in range(items)], -(-items // 8))
    delete_from_collection(base / "tomb", [f"a{i}" for i in range(0, items, 3)])
    return base


def argv(op: str, work: Path) -> list[str]:
    return {
        "compress": ["compress", str(work / "x.npy"), "--codec", str(work / "pq.smzc"), "-o", str(work / "old.smz")],
        "append": ["append", str(work / "a.smz"), str(work / "more.npy"), "--id-prefix", "m"],
        "compact": ["compact", str(work / "a.smz"), "--force"],
        "merge": ["merge", str(work / "a.smz"), str(work / "b.smz"), "-o", str(work / "m.smz")],
        "delete": ["delete", str(work / "a.smz"), "--ids", str(work / "gone.txt")],
        "delete-coll": ["delete", str(work / "coll"), "--ids", str(work / "gone.txt")],
        "purge": ["compact", str(work / "tomb")],
        RAY_OP: ["compress", str(work / "x.npy"), "--codec", str(work / "pq.smzc"), "--ray", "--workers", "2",
                 "--shard-items", "2500", "-o", str(work / "coll")],
    }[op]


def check(op: str, base: Path, work: Path) -> str:
    """'original' (untouched), 'complete' (replaced or written in full) or a string naming the damage."""
    from semzip import SemzipError
    from semzip.container import Archive

    items = np.load(base / "x.npy", mmap_mode="r").shape[0]
    if op == RAY_OP:
        return _check_collection(work / "coll", items)
    if op in ("delete-coll", "purge"):
        return _check_deleted(op, base, work, items)
    target, want = {"compress": ("old.smz", items), "append": ("a.smz", items + items // 2),
                    "compact": ("a.smz", items), "merge": ("m.smz", items + items // 2),
                    "delete": ("a.smz", items - len(range(0, items, 3)))}[op]
    for name in ("x.npy", "more.npy", "pq.smzc", "b.smz") + (("a.smz",) if op in ("compress", "merge") else ()):
        if (work / name).read_bytes() != (base / name).read_bytes():
            return f"input {name} changed"
    path = work / target
    if not path.exists():
        return "original" if op == "merge" else f"{target} is gone"
    if (base / target).exists() and path.read_bytes() == (base / target).read_bytes():
        return "original"
    try:
        with Archive.open(path) as arc:
            problems = arc.verify()
            if problems or arc.items != want:
                return f"{target}: {arc.items} items of {want}, problems {problems[:2]}"
    except SemzipError as exc:
        return f"{target} is damaged: {exc}"
    return "complete"


def _check_collection(folder: Path, items: int) -> str:
    """A killed Ray run leaves no manifest ('original') or one whose every listed shard is intact."""
    from semzip import SemzipError
    from semzip.shards import MANIFEST_NAME, ShardedArchive

    if not (folder / MANIFEST_NAME).exists():
        return "original"
    try:
        with ShardedArchive.open(folder, partial=True) as coll:
            if coll.verify() or coll.items != sum(s["items"] for s in coll.manifest["shards"]):
                return f"collection damaged: {coll.verify()[:2]}"
            return "complete" if coll.complete and coll.items == items else "original"  # resumable
    except SemzipError as exc:
        return f"collection damaged: {exc}"


def _check_deleted(op: str, base: Path, work: Path, items: int) -> str:
    """A killed delete leaves the collection's manifest as it was or with every tombstone, shards
    untouched; a killed purge leaves the tombstoned collection or the purged one (files it wrote but
    never named, or old ones it had not yet removed, may be left for the next purge to remove)."""
    from semzip import SemzipError
    from semzip.shards import MANIFEST_NAME, ShardedArchive

    name = "coll" if op == "delete-coll" else "tomb"
    folder = work / name
    kept = [f"a{i}" for i in range(items) if i % 3]
    if (folder / MANIFEST_NAME).read_bytes() == (base / name / MANIFEST_NAME).read_bytes():
        with ShardedArchive.open(folder) as coll:
            return "original" if coll.verify() == [] else f"{name} damaged: {coll.verify()[:2]}"
    try:
        with ShardedArchive.open(folder) as coll:
            tombstones = sum(len(s.get("deleted", [])) for s in coll.manifest["shards"])
            if coll.verify() or coll.ids != kept or tombstones != (items - len(kept) if op == "delete-coll" else 0):
                return f"{name}: {coll.items} items of {len(kept)}, {tombstones} tombstones, problems {coll.verify()[:2]}"
            if op == "delete-coll" and any((folder / s["file"]).read_bytes() != (base / name / s["file"]).read_bytes()
                                           for s in coll.manifest["shards"]):
                return f"{name}: a shard file changed"
    except SemzipError as exc:
        return f"{name} is damaged: {exc}"
    return "complete"


def fresh(base: Path, work: Path) -> None:
    if work.exists():
        shutil.rmtree(work)
    shutil.copytree(base, work)


def run_child(args: list[str], delay: float | None) -> tuple[bool, float]:
    """Run a child writer; SIGKILL it `delay` seconds after it is ready (None: let it finish).
    Returns (whether it was killed before finishing, seconds from ready to the end)."""
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    proc = subprocess.Popen([sys.executable, "-c", CHILD, "-q", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, env=env)
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != b"ready":
        proc.kill()
        raise RuntimeError("the writer did not start")
    start = time.perf_counter()
    if delay is not None:
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return True, time.perf_counter() - start
    code = proc.wait()
    if code != 0:
        raise RuntimeError(f"semzip {' '.join(args)} exited {code}")
    return False, time.perf_counter() - start


def kill_once(op: str, base: Path, work: Path, delay: float) -> dict[str, object]:
    """One kill on a fresh copy, then the check; when the original survived, the next writer runs the
    same command on what the dead one left, and must complete it and remove the dead writer's temps."""
    from semzip.cli import main

    fresh(base, work)
    killed, _ = run_child(argv(op, work), delay)
    temps_left = len(list(work.rglob(".*.tmp")))
    outcome = check(op, base, work)
    code, after = 0, outcome
    if outcome == "original":
        with contextlib.redirect_stdout(io.StringIO()):
            code = main(["-q", *argv(op, work)])
        after = check(op, base, work)
    return {"op": op, "delay": delay, "killed": killed, "outcome": outcome, "temps_left": temps_left,
            "rerun_code": code, "rerun": after, "temps_after_rerun": sorted(p.name for p in work.rglob(".*.tmp"))}


def durations(base: Path, work: Path) -> dict[str, float]:
    """Uninterrupted run time of each command, from ready to exit."""
    out = {}
    for op in OPS:
        fresh(base, work)
        out[op] = run_child(argv(op, work), None)[1]
    return out


def campaign(base: Path, work: Path, kills: int, seed: int, report: Callable[[dict], None] = lambda r: None) -> list[dict]:
    """`kills` kills spread over the commands, delays uniform over 1.2 x each one's run time."""
    rng = np.random.default_rng(seed)
    took = durations(base, work)
    results = []
    for i in range(kills):
        op = OPS[i % len(OPS)]
        result = kill_once(op, base, work, float(rng.uniform(0.0, 1.2 * took[op])))
        results.append(result)
        report(result)
    return results


def failures(results: list[dict]) -> list[dict]:
    """The kills after which something did not hold."""
    return [r for r in results if r["outcome"] not in ("original", "complete") or r["rerun_code"] != 0
            or r["rerun"] != "complete" or r["temps_after_rerun"]]
