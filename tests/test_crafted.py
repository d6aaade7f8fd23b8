"""Crafted archives with valid checksums (tests/crafted.py): open, info, verify and decode either work
or raise semzip's own error; never another exception, never a multi-GiB allocation."""

import numpy as np
import pytest

from semzip import SemzipError, make_codec
from semzip.container import Archive, write_archive

from .conftest import unit_rows
from .crafted import mutate

SPECS = ["f16", "sign", "pq:M=8,K=16,opq=0", "smic:atoms=16,k=2,coef=2,dbits=2,bits=0.0,cos=0.0"]
CASES = 150


@pytest.mark.parametrize("spec", SPECS)
def test_crafted_archives_raise_only_semzip_errors(tmp_path, spec):
    X = unit_rows(300, 64, seed=60)
    path = tmp_path / "a.smz"
    write_archive(path, make_codec(spec).fit(X), X[:40], ids=[f"i{i}" for i in range(40)], block_items=16)
    valid = path.read_bytes()
    rng = np.random.default_rng(61)
    refused = 0
    for _ in range(CASES):
        path.write_bytes(mutate(rng, valid))
        try:
            with Archive.open(path) as arc:
                arc.info()
                arc.verify()
                Y = arc.decode()
                assert Y.shape == (arc.items, arc.dim)
        except SemzipError:
            refused += 1
    assert refused > CASES // 4
