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
