"""Crafted archives and codec files with valid checksums (tests/crafted.py): open, info, verify and
decode either work, giving finite vectors, or raise semzip's own error; never another exception,
never a multi-GiB allocation."""

import numpy as np
import pytest

from semzip import FormatError, SemzipError, load_codec, make_codec
from semzip.codecs import codec_from_bytes
from semzip.container import Archive, write_archive

from .utils import unit_rows
from .crafted import mutate_codec, mutate

SPECS = ["f16", "sign", "pq:M=8,K=16,opq=0", "smic:atoms=16,k=2,coef=2,dbits=2,bits=0.0,cos=0.0", "rq:M=4,K=16,beam=4"]
CASES = 200  # x (5 specs x 2 + 8 codec families) = 3,600 crafted files per run


@pytest.mark.parametrize("embed", [True, False], ids=["embedded", "shared"])
@pytest.mark.parametrize("spec", SPECS)
def test_crafted_archives_raise_only_semzip_errors(tmp_path, spec, embed):
    X = unit_rows(300, 64, seed=60)
    path = tmp_path / "a.smz"
    codec = make_codec(spec).fit(X)
    write_archive(path, codec, X[:40], ids=[f"i{i}" for i in range(40)], block_items=16, embed_codec=embed)
    valid = path.read_bytes()
    rng = np.random.default_rng(61)
    refused = 0
    for _ in range(CASES):
        path.write_bytes(mutate(rng, valid))
        try:
            with Archive.open(path, codec=None if embed else codec) as arc:
                arc.info()
                arc.verify()
                Y = arc.decode()
                assert Y.shape == (arc.items, arc.dim) and np.isfinite(Y).all()
        except SemzipError:
            refused += 1
    assert refused > CASES // 4


CODEC_SPECS = [*SPECS, "int8", "pq:M=8,K=16,opq=1", "pqvae:dim=8,K=16,grid=2,C=16,H=16,blocks=1"]


@pytest.mark.parametrize("spec", CODEC_SPECS)
def test_crafted_codec_files_are_refused_or_decode_finite(spec):
    """Arrays with NaN/Inf/1e30, cut or re-typed arrays, absurd widths, hostile fit_info; hash fixed up."""
    X = unit_rows(300, 64, seed=62)
    valid = make_codec(spec).fit(X).to_bytes()
    rng = np.random.default_rng(63)
    refused = 0
    for _ in range(CASES):
        try:
            codec = codec_from_bytes(mutate_codec(rng, valid))
            assert np.isfinite(codec.decode(codec.encode(X[:20]), 20)).all()
        except SemzipError:
            refused += 1
    assert refused > CASES // 4


def test_codec_file_with_bf16_or_oversized_is_refused(tmp_path):
    from safetensors.numpy import save

    with pytest.raises(FormatError):
        codec_from_bytes(save({"a": np.zeros(4, np.float16)}, metadata={"format": "semzip-codec"}).replace(b"F16", b"BF16", 1))
    big = tmp_path / "big.smzc"
    with open(big, "wb") as fh:
        fh.truncate((1 << 31) + 1)  # sparse: no disk used
    with pytest.raises(FormatError, match="at most"):
        load_codec(big)


def test_header_width_other_than_the_shared_codecs_is_refused(tmp_path):
    import json

    from .crafted import join, split

    X = unit_rows(100, 64, seed=64)
    codec = make_codec("pq:M=8,K=16,opq=0").fit(X)
    path = tmp_path / "a.smz"
    write_archive(path, codec, X[:20], embed_codec=False)
    head, sections = split(path.read_bytes())
    parts = dict(sections)
    h = json.loads(parts[b"HEAD"])
    h["dim"] = 7
    path.write_bytes(join(head, [(t, json.dumps(h).encode() if t == b"HEAD" else p) for t, p in sections]))
    with pytest.raises(FormatError, match="header says width 7 but its codec codes width 64"):
        Archive.open(path, codec=codec)


def test_codec_fit_info_with_infinity_is_refused():
    """`semzip info --json` prints fit_info; Infinity is not JSON, so such a file is refused on load."""
    import json

    from safetensors.numpy import load, save

    blob = make_codec("sign").fit(unit_rows(50, 8)).to_bytes()
    meta = json.loads(blob[8 : 8 + int.from_bytes(blob[:8], "little")])["__metadata__"]
    meta["fit_info"] = '{"loss": Infinity}'
    with pytest.raises(FormatError, match="Infinity in fit_info"):
        codec_from_bytes(save(dict(load(blob)), metadata=meta))
