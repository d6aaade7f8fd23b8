"""PQ-VAE codec: training converges, numpy inference matches torch, state round-trips, errors are clear."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from semzip._errors import FormatError, InputError, NotFittedError, SpecError
from semzip.codecs import codec_from_bytes, make_codec

torch = pytest.importorskip("torch")

SPEC = "pqvae:dim=8,K=16,grid=2,C=16,H=16,blocks=1"
SRC = str(Path(__file__).resolve().parents[1] / "src")


def _data(n: int = 600, d: int = 32, seed: int = 0) -> np.ndarray:
    """Unit vectors around a common mean with a few clusters, like CLIP embeddings in miniature."""
    centres = np.random.default_rng(12345).normal(size=(8, d))
    rng = np.random.default_rng(seed)
    X = 2.0 + centres[rng.integers(0, 8, n)] + 0.3 * rng.normal(size=(n, d))
    return (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32)


def _fit(spec: str = SPEC, X: np.ndarray | None = None, **options):
    codec = make_codec(spec).set_params(**({"epochs": 30, "progress": False} | options))
    return codec.fit(_data() if X is None else X)


@pytest.fixture(scope="module")
def fitted():
    return _fit()


def test_training_converges(fitted):
    hist = fitted.fit_info()["history"]
    quantised = [h for h in hist if h["phase"] == "vq"]
    assert quantised[-1]["loss"] < 0.8 * quantised[0]["loss"]
    assert quantised[-1]["val_loss"] < 0.8 * quantised[0]["val_loss"]
    X = _data(seed=1)
    cos = (fitted.decode(fitted.encode(X), len(X)) * X).sum(axis=1).mean()
    assert cos > 0.97  # the shared mean direction alone gives 0.92 on this data
    info = fitted.fit_info()
    assert 0 < info["codebook_usage"] <= 1 and 1 <= info["perplexity"] <= fitted.K


def test_fit_is_deterministic(fitted):
    again = _fit()
    assert again.state_hash == fitted.state_hash


def test_codes_and_counted_bits(fitted):
    X = _data(seed=2)
    codes = fitted.quantize(X)["codes"]
    assert codes.shape == (len(X), fitted.n_sub) == (len(X), 2 * 2 * 16 // 8)
    assert fitted.fixed_bits == fitted.n_sub * 4
    data = fitted.encode(X)
    np.testing.assert_array_equal(fitted.unpack(data, len(X))["codes"], codes)
    est = fitted.estimated_bits(X)
    assert est.shape == (len(X),) and abs(8 * len(data) / len(X) - est.mean()) < 1.0
    assert 0 <= fitted.fit_info()["codes_uniform_mix"] <= 1
    Y = fitted.decode(data, len(X))
    assert Y.dtype == np.float32 and Y.shape == X.shape
    np.testing.assert_allclose(np.linalg.norm(Y, axis=1), 1.0, atol=1e-5)


def test_save_load_round_trip(fitted):
    X = _data(seed=3)
    loaded = codec_from_bytes(fitted.to_bytes())
    assert loaded.spec == fitted.spec and loaded.state_hash == fitted.state_hash
    data = fitted.encode(X)
    assert loaded.encode(X) == data
    np.testing.assert_array_equal(loaded.decode(data, len(X)), fitted.decode(data, len(X)))


def test_numpy_matches_torch(fitted):
    from semzip.codecs.pqvae._train import _Net

    X = _data(seed=4)
    codes = fitted.quantize(X)["codes"]
    net = _Net(fitted, X.shape[1])
    with torch.no_grad():
        for name, p in net.p.items():
            p.copy_(torch.from_numpy(fitted.weights_[name]))
        W = fitted._mats["white"].left_product(X - fitted.weights_["mean"]).astype(np.float32)
        W = torch.from_numpy(W / np.linalg.norm(W, axis=1, keepdims=True))
        z = net.encode(W)
        r = net.decode(net.p["codebook"][torch.from_numpy(codes).long()]).numpy()
    np.testing.assert_allclose(fitted._net.encode(W.numpy()), z.numpy(), atol=1e-5)
    np.testing.assert_array_equal(net.assign(z).numpy(), codes)
    codebook = fitted.weights_["codebook"]
    np.testing.assert_allclose(fitted._net.decode(codebook[codes]), r, atol=1e-5)


def test_inference_without_torch(fitted, tmp_path):
    X = _data(seed=5)
    (tmp_path / "codec.smzc").write_bytes(fitted.to_bytes())
    np.save(tmp_path / "x.npy", X)
    (tmp_path / "data.bin").write_bytes(fitted.encode(X))
    np.save(tmp_path / "expect.npy", fitted.decode(fitted.encode(X), len(X)))
    script = textwrap.dedent(f"""
        import sys
        sys.modules["torch"] = None  # any `import torch` now raises ImportError
        sys.path.insert(0, {SRC!r})
        import numpy as np
        from semzip.codecs import codec_from_bytes
        from pathlib import Path
        d = Path({str(tmp_path)!r})
        codec = codec_from_bytes((d / "codec.smzc").read_bytes())
        X = np.load(d / "x.npy")
        np.testing.assert_array_equal(codec.decode((d / "data.bin").read_bytes(), len(X)), np.load(d / "expect.npy"))
        Y = codec.decode(codec.encode(X), len(X))
        np.testing.assert_allclose(Y, np.load(d / "expect.npy"), atol=1e-6)
        try:
            codec.fit(X)
        except ImportError:
            print("ok")
    """)
    # the child runs BLAS on 2 threads, the parent on 1: decoding must not care (semzip._exact)
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "2", "OMP_NUM_THREADS": "2"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


@pytest.mark.parametrize(
    ("spec", "param"),
    [
        ("pqvae:dim=0", "dim"),
        ("pqvae:K=12", "K"),
        ("pqvae:K=1", "K"),
        ("pqvae:grid=0", "grid"),
        ("pqvae:dim=16,C=24", "C"),
        ("pqvae:H=0", "H"),
        ("pqvae:blocks=-1", "blocks"),
        ("pqvae:coarse=17", "coarse"),
        ("pqvae:dim=1.5", "dim"),
        ("pqvae:depth=3", "depth"),
    ],
)
def test_bad_specs_name_the_parameter(spec, param):
    with pytest.raises(SpecError, match=param):
        make_codec(spec)


def test_canonical_spec():
    assert str(make_codec("pqvae:dim=16,K=8").spec) == "pqvae:dim=16,K=8,grid=5,C=128,H=128,blocks=2,coarse=0"
    assert make_codec("pqvae:dim=16,K=8").fixed_bits == 5 * 5 * 128 // 16 * 3


def test_coarse_stage():
    coarse = _fit(SPEC.replace("blocks=1", "blocks=1,coarse=4"))
    X = _data(seed=7)
    codes = coarse.quantize(X)
    assert codes["coarse"].shape == (len(X), 1) and codes["coarse"].max() < 16
    assert coarse.fixed_bits == 4 + coarse.n_sub * 4
    data = coarse.encode(X)
    for key, value in coarse.unpack(data, len(X)).items():
        np.testing.assert_array_equal(value, codes[key])
    loaded = codec_from_bytes(coarse.to_bytes())
    np.testing.assert_array_equal(loaded.decode(data, len(X)), coarse.decode(data, len(X)))
    assert (coarse.decode(data, len(X)) * X).sum(axis=1).mean() > 0.97
    with pytest.raises(InputError, match="coarse=12 needs at least 4096 training vectors"):
        _fit(SPEC.replace("blocks=1", "blocks=1,coarse=12"))


def test_residual_stage_meets_its_rate_and_refines():
    spec = SPEC.replace("blocks=1", "blocks=1,bits=60")
    refined, plain = _fit(spec), _fit(SPEC)
    assert refined.spec.params[-1] == ("bits", 60)
    info = refined.fit_info()
    assert info["held_out_bits_per_item"] == pytest.approx(60, abs=0.5)
    assert refined.refine_table_.streams == 32 and refined.refine_table_.alphabet % 2 == 1
    X = _data(seed=8)
    codes = refined.quantize(X)
    np.testing.assert_array_equal(codes["codes"], plain.quantize(X)["codes"])  # earlier stages as without it
    data = refined.encode(X)
    for key, value in refined.unpack(data, len(X)).items():
        np.testing.assert_array_equal(value, codes[key])
    assert 8 * len(data) / len(X) < refined.fixed_bits  # entropy-coded, and far below fixed-width fields
    err = lambda c: 1 - (c.decode(c.encode(X), len(X)) * X).sum(axis=1).mean()
    assert err(refined) < 0.5 * err(plain)
    loaded = codec_from_bytes(refined.to_bytes())
    assert loaded.state_hash == refined.state_hash
    np.testing.assert_array_equal(loaded.decode(data, len(X)), refined.decode(data, len(X)))


def test_coarse_search_keeps_the_cheapest_codes():
    from semzip._validate import l2_normalize

    codec = _fit(SPEC.replace("blocks=1", "blocks=1,coarse=4,bits=60"))
    X = _data(seed=9)
    codec.coarse_search = 1
    nearest = codec.quantize(X)
    codec.coarse_search = 4
    searched = codec.quantize(X)
    U = l2_normalize(X)
    plain, chosen = codec._rd_cost(U, nearest), codec._rd_cost(U, searched)
    assert (chosen <= plain + 1e-6).all()
    moved = searched["coarse"][:, 0] != nearest["coarse"][:, 0]
    assert moved.any() and (chosen[moved] < plain[moved]).all()
    assert codec._code_bits(searched).mean() < codec._code_bits(nearest).mean()
    data = codec.encode(X)  # decodes with the same codec whichever centroid each item took
    for key, value in codec.unpack(data, len(X)).items():
        np.testing.assert_array_equal(value, searched[key])
    assert (codec.decode(data, len(X)) * X).sum(axis=1).mean() > 0.99


def test_residual_stage_errors():
    with pytest.raises(SpecError, match="bits=20 must be 0"):
        make_codec(SPEC.replace("blocks=1", "blocks=1,bits=20"))  # below the 32 fixed bits of the VAE stage
    refined = _fit(SPEC.replace("blocks=1", "blocks=1,bits=60"), epochs=3)
    R, idx = np.zeros((10, 32), np.float32), np.arange(10)
    with pytest.raises(InputError, match="leaves nothing for the residual stage"):
        refined._fit_refine(R, idx, idx, stage_bits=59.5)  # earlier stages already cost what bits= allows
    other = make_codec(str(refined.spec))
    other.n_features_in_ = refined.n_features_in_
    arrays = refined.get_state()
    arrays["refine_counts"] = arrays["refine_counts"][:, :-1]
    with pytest.raises(FormatError, match="alphabet"):
        other._set_state(arrays)


def test_specs_written_before_the_residual_stage_keep_their_form():
    assert str(make_codec(SPEC).spec) == SPEC + ",coarse=0"  # no ",bits=0": older codec hashes stay valid
    assert str(make_codec(SPEC + ",bits=100").spec) == SPEC + ",coarse=0,bits=100"


def test_unfitted_raises():
    codec = make_codec(SPEC)
    with pytest.raises(NotFittedError):
        codec.encode(_data(n=4))
    with pytest.raises(NotFittedError):
        codec.decode(b"", 0)


def test_wrong_width_names_both(fitted):
    with pytest.raises(InputError, match=r"width 16 .* width 32"):
        fitted.encode(np.ones((3, 16), np.float32))


def test_damaged_checkpoint(fitted):
    good = fitted.to_bytes()
    with pytest.raises(FormatError):
        codec_from_bytes(good[: len(good) // 2])
    bad = bytearray(good)
    bad[-3] ^= 0xFF  # inside the last array: the content hash no longer matches
    with pytest.raises(FormatError):
        codec_from_bytes(bytes(bad))


def test_checkpoint_with_wrong_arrays(fitted):
    from safetensors.numpy import load, save

    from semzip.codecs._base import read_state

    data = fitted.to_bytes()
    _, spec, _, _, arrays, _ = read_state(data)
    other = make_codec(spec)
    other.n_features_in_ = fitted.n_features_in_
    del arrays["codebook"]
    with pytest.raises(FormatError, match="codebook"):
        other._set_state(arrays)
    arrays = load(data)
    arrays["rho"] = np.full(1, np.nan, np.float32)
    with pytest.raises(FormatError, match="non-finite"):
        other._set_state(arrays)
    assert save(arrays)  # the file format itself would accept it; the codec must not


def test_corrupt_payload(fitted):
    data = fitted.encode(_data(n=50, seed=6))
    with pytest.raises(FormatError):
        fitted.decode(data[:-4] if len(data) > 4 else data + b"\0\0\0\0", 50)


def test_learned_table_falls_back_towards_uniform():
    from semzip.codecs.pqvae._codec import _learned_table

    rng = np.random.default_rng(0)
    skewed = rng.choice(8, size=(400, 3), p=[0.65] + [0.05] * 7)
    fit_idx, val_idx = np.arange(300), np.arange(300, 400)
    table, lam = _learned_table(skewed, fit_idx, val_idx, 8)
    assert lam < 0.5 and table.information_bits(skewed[val_idx]).mean() < 3 * 3  # learned skew pays off
    drift = np.concatenate([skewed[:300], rng.integers(0, 8, size=(100, 3))])  # held-out items are uniform
    table, lam = _learned_table(drift, fit_idx, val_idx, 8)
    assert lam > 0
    assert table.information_bits(drift[val_idx]).mean() < 9 + 0.5  # near fixed length, not far above it
