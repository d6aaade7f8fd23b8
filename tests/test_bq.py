"""The binary/few-bit codec `bq`: exact rate on any input, its decoding rule, search on the codes."""

import numpy as np
import pytest

from semzip import InputError, SpecError, make_codec
from semzip.container import Archive, write_archive
from semzip.eval import load_dataset
from semzip.eval.datasets import load_reference_pool
from semzip.eval.runner import task_metrics

from .utils import unit_rows

D = 64


@pytest.mark.parametrize("spec", ["bq:D=20,b=1", "bq:D=13,b=3,rotate=1", "bq:D=16,b=4,white=0", "bq:D=20,b=1,top=7",
                                  "bq:D=9,b=2,top=9,white=0"])
def test_the_rate_is_d_times_b_plus_top_bits_on_any_input(tmp_path, spec):
    codec = make_codec(spec).fit(unit_rows(500, D, seed=1))
    noise = np.random.default_rng(2).standard_normal((333, D)).astype(np.float32)
    for X in (unit_rows(333, D, seed=1), unit_rows(333, D, seed=3, clusters=2), noise / np.linalg.norm(noise, axis=1, keepdims=True)):
        write_archive(tmp_path / "a.smz", codec, X, block_items=100)
        with Archive.open(tmp_path / "a.smz") as arc:
            blocks = [(len(X[i : i + 100]) * codec.fixed_bits + 7) // 8 for i in range(0, len(X), 100)]
            assert arc.info()["payload_bits"] == 8 * sum(blocks)
            assert arc.verify() == [] and np.isfinite(arc.decode()).all()


def test_white_decoding_is_the_mean_plus_a_direction_at_rabitqs_length():
    """Every item decodes at one distance from the mean: the training mean of |z| over the mean
    alignment <u, z/|z|> of its coded direction u (RaBitQ's inner-product factor)."""
    X = unit_rows(400, D, seed=4)
    codec = make_codec("bq:D=24,b=2").fit(X)
    Y = codec.reconstruct(codec.quantize(unit_rows(50, D, seed=5)))
    np.testing.assert_allclose(np.linalg.norm(Y - codec.mean_, axis=1), codec.scale_[0], rtol=1e-5)
    R = codec.reconstruct(codec.quantize(X)) - codec.mean_
    z = (X - X.mean(axis=0)) @ (codec.decoder_.T / np.linalg.norm(codec.decoder_, axis=1))  # the 24 axes
    u = (R @ (codec.decoder_.T / np.linalg.norm(codec.decoder_, axis=1))) / codec.scale_[0]
    length = np.linalg.norm(z, axis=1)
    want = length.mean() / ((u * z).sum(axis=1) / length).mean()
    np.testing.assert_allclose(codec.scale_[0], want, rtol=1e-4)
    assert codec.scale_[0] > length.mean()
    least_squares = make_codec("bq:D=24,b=2,white=0").fit(X)
    T = unit_rows(200, D, seed=4)
    err = [float(((c.reconstruct(c.quantize(T)) - T) ** 2).sum(axis=1).mean()) for c in (least_squares, codec)]
    assert err[0] < err[1]  # white=0 is the least-squares decoder; white=1 trades error for weighting


def test_top_coordinates_get_one_bit_more_and_decode_closer():
    X, T = unit_rows(500, D, seed=12), unit_rows(200, D, seed=13)
    plain, more = make_codec("bq:D=16,b=1").fit(X), make_codec("bq:D=16,b=1,top=8").fit(X)
    levels = more.quantize(T)["levels"]
    assert levels[:, :8].max() == 3 and levels[:, 8:].max() == 1
    np.testing.assert_array_equal(levels[:, 8:], plain.quantize(T)["levels"][:, 8:])
    def residual_cosine(c):  # of the decoded and the true offsets from the mean
        R, E = c.reconstruct(c.quantize(T)) - c.mean_, T - c.mean_
        return float((np.sum(R * E, axis=1) / np.linalg.norm(R, axis=1) / np.linalg.norm(E, axis=1)).mean())

    assert residual_cosine(more) > residual_cosine(plain)


def test_sign_codes_are_the_signs_of_the_principal_coordinates():
    X = unit_rows(300, D, seed=6)
    codec = make_codec("bq:D=10,b=1").fit(X)
    centred = X.astype(np.float64) - X.mean(axis=0)
    _, vecs = np.linalg.eigh(centred.T @ centred)
    top = vecs[:, ::-1][:, :10]
    z = (unit_rows(40, D, seed=7) - X.mean(axis=0)) @ top
    levels = codec.quantize(unit_rows(40, D, seed=7))["levels"]
    same = (levels == 1) == (z > 0)
    assert same.all(axis=0).sum() + (~same).all(axis=0).sum() == 10  # each axis agrees up to its sign


def test_rotation_is_seeded_and_changes_the_code():
    X = unit_rows(300, D, seed=8)
    a, b = make_codec("bq:D=16,b=1,rotate=1").fit(X), make_codec("bq:D=16,b=1,rotate=1").fit(X)
    assert a.state_hash == b.state_hash
    assert a.state_hash != make_codec("bq:D=16,b=1,rotate=1").set_params(seed=1).fit(X).state_hash
    assert a.state_hash != make_codec("bq:D=16,b=1").fit(X).state_hash


def test_scores_on_the_codes_match_the_decoded_vectors():
    codec = make_codec("bq:D=32,b=2,rotate=1").fit(unit_rows(400, D, seed=9))
    codes, Q = codec.quantize(unit_rows(100, D, seed=10)), unit_rows(5, D, seed=11)
    # decoding rounds the decoder to float32-exact integers (17 bits here); scoring keeps float64's
    np.testing.assert_allclose(codec.scores(codes, Q), codec.reconstruct(codes) @ Q.T, atol=5e-5)


def test_impossible_specs_are_refused():
    with pytest.raises(SpecError, match="bq:b"):
        make_codec("bq:D=8,b=5")
    with pytest.raises(SpecError, match="bq:top"):
        make_codec("bq:D=8,b=1,top=4,rotate=1")
    with pytest.raises(SpecError, match="bq:top"):
        make_codec("bq:D=8,b=1,top=9")
    with pytest.raises(InputError, match="more coordinates"):
        make_codec("bq:D=65,b=1").fit(unit_rows(100, D))


def test_real_clip_signs_of_256_principal_coordinates_keep_zero_shot(shared_data):
    """256 bits per item, fitted on the reference pool (no Caltech in it): zero-shot Caltech within
    0.05 of the float embeddings' top-1, and within 0.03 of the 512-bit `sign` codec's at half its bits."""
    folder = shared_data / "clip-vit-b-32"
    pool, _ = load_reference_pool(folder)
    ds = load_dataset(folder / "zeroshot_caltech101.npz")
    scores = {}
    for spec in ("bq:D=256,b=1", "sign"):
        codec = make_codec(spec).fit(pool)
        scores[spec] = task_metrics(ds, codec.decode(codec.encode(ds.items), len(ds.items)))["zs_top1"]
    reference = task_metrics(ds, ds.items)["zs_top1"]
    assert scores["bq:D=256,b=1"] > reference - 0.05 and scores["bq:D=256,b=1"] > scores["sign"] - 0.03
