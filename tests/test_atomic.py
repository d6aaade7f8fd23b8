import os

import pytest

from semzip._atomic import atomic_write_bytes, atomic_writer


def test_new_files_follow_the_umask_and_replaced_files_keep_their_mode(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "new", b"x")
        assert (tmp_path / "new").stat().st_mode & 0o777 == 0o644
        (tmp_path / "kept").write_bytes(b"old")
        os.chmod(tmp_path / "kept", 0o640)
        atomic_write_bytes(tmp_path / "kept", b"new")
        assert (tmp_path / "kept").stat().st_mode & 0o777 == 0o640
    finally:
        os.umask(old)


def test_an_exception_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "a"
    target.write_bytes(b"precious")
    with pytest.raises(RuntimeError):
        with atomic_writer(target) as fh:
            fh.write(b"half")
            raise RuntimeError("crash mid-write")
    assert target.read_bytes() == b"precious"
    assert [p.name for p in tmp_path.iterdir()] == ["a"]


def test_keep_sees_the_finished_file_and_decides_whether_it_replaces(tmp_path):
    target = tmp_path / "a"
    target.write_bytes(b"precious")
    seen = []

    def keep(tmp):
        seen.append(tmp.read_bytes())
        return tmp.read_bytes() == b"better"

    with atomic_writer(target, keep=keep) as fh:
        fh.write(b"worse")
    assert target.read_bytes() == b"precious" and [p.name for p in tmp_path.iterdir()] == ["a"]
    with atomic_writer(target, keep=keep) as fh:
        fh.write(b"better")
    assert target.read_bytes() == b"better" and [p.name for p in tmp_path.iterdir()] == ["a"]
    assert seen == [b"worse", b"better"]


def test_a_second_writer_is_refused_and_the_lock_leaves_no_file(tmp_path):
    import threading

    from semzip._atomic import BusyError, writer_lock

    target = tmp_path / "a.smz"
    entered, release, seen = threading.Event(), threading.Event(), []

    def hold():
        with writer_lock(target):
            entered.set()
            release.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    entered.wait(10)
    try:
        with pytest.raises(BusyError, match=f"being written by process {os.getpid()}"):
            with writer_lock(target):
                seen.append("entered")
    finally:
        release.set()
        thread.join()
    assert not seen
    with writer_lock(target), writer_lock(target):  # nested in one thread: passes through
        pass
    assert list(tmp_path.iterdir()) == []


def test_temps_of_dead_writers_are_cleaned_by_the_next_writer(tmp_path):
    target = tmp_path / "a.smz"
    (tmp_path / ".a.smz.k3j9x1.tmp").write_bytes(b"x" * 1000)  # a writer killed mid-write left this
    (tmp_path / ".other.smz.abc.tmp").write_bytes(b"y")  # another file's: kept
    atomic_write_bytes(target, b"new")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.smz.abc.tmp", "a.smz"]


def test_concurrent_appends_lose_no_item(tmp_path):
    """Two `semzip append` processes at once on one archive, 5 times: each either lands or is refused
    with exit 5; the archive always holds exactly the items of the appends that landed."""
    import subprocess
    import sys

    import numpy as np

    from semzip import make_codec
    from semzip.container import Archive, write_archive

    from .utils import unit_rows

    X = unit_rows(5000, 64, seed=50)
    codec = make_codec("pq:M=8,K=16,opq=0").fit(X[:1000])
    np.save(tmp_path / "more.npy", X)
    for rep in range(5):
        arc = tmp_path / f"a{rep}.smz"
        write_archive(arc, codec, X[:10])
        cmd = [sys.executable, "-m", "semzip", "-q", "append", str(arc), str(tmp_path / "more.npy")]
        procs = [subprocess.Popen(cmd + ["--id-prefix", f"p{i}-"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                 for i in range(2)]
        codes = [p.wait(timeout=300) for p in procs]
        assert set(codes) <= {0, 5}, [p.stderr.read() for p in procs]
        for p, code in zip(procs, codes):
            if code == 5:
                assert b"is being written by process" in p.stderr.read()
        with Archive.open(arc) as a:
            assert a.items == 10 + 5000 * codes.count(0)


def test_compact_keeps_the_archives_mode(tmp_path):
    from semzip import make_codec
    from semzip.compaction import compact_archive
    from semzip.container import write_archive

    from .utils import unit_rows

    X = unit_rows(300, 64, seed=51)
    target = tmp_path / "a.smz"
    write_archive(target, make_codec("int8").fit(X), X)
    os.chmod(target, 0o640)
    assert compact_archive(target, "f16", force=True)["replaced"]
    assert target.stat().st_mode & 0o777 == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["a.smz"]


def test_sigkill_at_random_moments_damages_nothing(tmp_path):
    """40 SIGKILLs spread over compress (over an existing archive), append, compact, merge and delete
    (benchmarks/kill_writers.py runs hundreds, and `compress --ray`): see tests/killing.py."""
    from . import killing

    base = killing.prepare(tmp_path, items=10_000)
    results = killing.campaign(base, tmp_path / "work", kills=40, seed=1)
    assert killing.failures(results) == []
    assert sum(bool(r["killed"]) for r in results) >= 10  # most delays land inside the run
    assert {r["outcome"] for r in results} == {"original", "complete"}
