"""Atomic file writes: a temp file in the target's folder, fsync, then rename over the target.

Writers of one target are serialised by an advisory lock (`.NAME.lock` beside it, flock), so two
appends at once never lose each other's items: the second is refused with the first one's PID.
A writer holding the lock also removes temp files that dead writers of the same target left behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from ._errors import InputError, SemzipError, WriteError


class BusyError(SemzipError):
    """Another process is writing the same file."""

    exit_code = 5


#: Locks held, by (lock path, thread): a writer inside another writer of the same file in the same
#: thread (append calling the atomic writer) passes through; another thread is refused like a process.
_held: dict[tuple[Path, int], int] = {}
_held_guard = threading.Lock()


@contextlib.contextmanager
def writer_lock(path: str | Path) -> Iterator[None]:
    """Hold the advisory write lock of `path` for the block; BusyError when another process holds it."""
    target = Path(path)
    lock = target.with_name(f".{target.name}.lock")
    key = (lock.absolute(), threading.get_ident())
    with _held_guard:
        if key in _held:
            _held[key] += 1
            nested = True
        else:
            nested = False
    if nested:
        try:
            yield
        finally:
            with _held_guard:
                _held[key] -= 1
        return
    fd = _acquire(lock, target)
    with _held_guard:
        _held[key] = 1
    try:
        _remove_stale_temps(target)
        yield
    finally:
        with _held_guard:
            del _held[key]
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock)  # unlinked while still locked: a waiter re-checks the inode and retries
        os.close(fd)


def _acquire(lock: Path, target: Path) -> int:
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise WriteError(f"cannot write {str(target)!r}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise BusyError(f"{str(target)!r} is being written by process {holder}; try again when it has "
                            "finished (nothing was changed)") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.write(fd, str(os.getpid()).encode())
            return fd
        os.close(fd)  # the holder removed the lock file as we opened it: take the new one


def _remove_stale_temps(target: Path) -> None:
    """Temp files of `target` left by writers that died (the lock proves no live writer owns them)."""
    folder = target.parent if str(target.parent) else Path(".")
    with contextlib.suppress(OSError):
        for tmp in folder.glob(glob.escape(f".{target.name}.") + "*.tmp"):
            with contextlib.suppress(OSError):
                tmp.unlink()


@contextlib.contextmanager
def atomic_writer(path: str | Path, keep: Callable[[Path], bool] | None = None) -> Iterator[BinaryIO]:
    """Yield a binary file that replaces `path` only if the block finishes without an exception.

    With `keep`, the finished file (flushed and synced, under its temporary name) is passed to
    `keep` first, and replaces `path` only when it returns True; else it is removed."""
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    if target.is_dir():
        raise InputError(f"cannot write {str(target)!r}: it is a folder")
    with writer_lock(target):
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
        except OSError as exc:
            raise WriteError(f"cannot write {str(target)!r}: {exc.strerror}") from None
        try:
            os.chmod(tmp, _final_mode(target))
            with os.fdopen(fd, "wb") as fh:
                yield fh
                fh.flush()
                os.fsync(fh.fileno())
            if keep is None or keep(Path(tmp)):
                os.replace(tmp, target)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)  # nothing left when replaced


def _final_mode(target: Path) -> int:
    """The replaced file's permissions, or what the umask gives a new file (mkstemp uses 0600)."""
    try:
        return target.stat().st_mode & 0o777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_writer(path) as fh:
        fh.write(data)
