"""Compressed-domain search, classification and merging: results equal brute force on decoded vectors."""

import json
import sys
import types

import numpy as np
import pytest

from semzip import CodecMismatchError, InputError, available_codecs, make_codec
from semzip.cli import main
from semzip.codecs import codec_class
from semzip.codecs.pq import PQCodec
from semzip.container import Archive, write_archive
from semzip.search import Collection, classify_archive, merge_archives, search_archive

from .utils import unit_rows

SPECS = [spec for name in available_codecs() for spec in codec_class(name).example_specs]
D = 64


@pytest.fixture(scope="module")
def data():
    return unit_rows(2500, D, seed=11, clusters=12)


@pytest.fixture(scope="module")
def fitted(data):
    return {spec: make_codec(spec).fit(data[:400]) for spec in SPECS}


def brute_force(decoded, Q, k, normalize=True):
    if normalize:
        decoded = decoded / np.linalg.norm(decoded, axis=1, keepdims=True)
        Q = Q / np.linalg.norm(Q, axis=1, keepdims=True)
    S = Q @ decoded.T
    return np.argsort(-S, axis=1, kind="stable")[:, :k], -np.sort(-S, axis=1)[:, :k]


@pytest.mark.parametrize("spec", SPECS)
def test_codec_scores_and_norms_match_the_reconstruction(fitted, data, spec):
    codec = fitted[spec]
    codes = codec.quantize(data[:300])
    Q = unit_rows(7, D, seed=12)
    R = codec.reconstruct(codes)
    S = codec.scores(codes, Q)
    assert S.shape == (300, 7) and S.dtype == np.float32
    np.testing.assert_allclose(S, R @ Q.T, atol=1e-5)
    np.testing.assert_allclose(codec.norms(codes), np.linalg.norm(R, axis=1), atol=1e-5)


def test_scorer_validates_queries(fitted):
    codec = fitted[SPECS[0]]
    with pytest.raises(InputError, match="width 32 does not match"):
        codec.scorer(np.ones((2, 32), np.float32))
    with pytest.raises(InputError, match="non-finite"):
        codec.scorer(np.full((1, D), np.nan, np.float32))


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("normalize", [True, False])
def test_search_equals_brute_force_on_decoded(tmp_path, fitted, data, spec, normalize):
    path = tmp_path / "a.smz"
    write_archive(path, fitted[spec], data, block_items=300)  # several chunks and a short last block
    Q = unit_rows(5, D, seed=13) * 3.0  # unnormalised queries: raw scores scale, rankings do not
    with Archive.open(path) as arc:
        decoded = arc.decode()
    _, best = brute_force(decoded, Q, 10, normalize)
    result = search_archive(path, Q, k=10, normalize=normalize)
    assert result.scores.shape == (5, 10)
    np.testing.assert_allclose(result.scores, best, rtol=1e-5, atol=1e-5)
    # the hits really have those scores (small codebooks tie many items, so sets may differ)
    R = decoded / np.linalg.norm(decoded, axis=1, keepdims=True) if normalize else decoded
    Qn = Q / np.linalg.norm(Q, axis=1, keepdims=True) if normalize else Q
    hit_scores = np.einsum("qkd,qd->qk", R[result.positions], Qn)
    np.testing.assert_allclose(hit_scores, result.scores, rtol=1e-5, atol=1e-5)
    assert result.ids[0][0] == str(result.positions[0, 0])
    assert np.all(np.diff(result.scores, axis=1) <= 1e-7)  # best first


@pytest.mark.parametrize("chunk,k", [(300, 10), (40, 64), (1, 3)])
def test_running_top_k_across_many_chunks(tmp_path, fitted, data, chunk, k):
    path = tmp_path / "a.smz"
    write_archive(path, fitted["int8"], data, block_items=37)
    Q = unit_rows(6, D, seed=17)
    with Archive.open(path) as arc:
        _, best = brute_force(arc.decode(), Q, k)
    with Collection([path], chunk_items=chunk, query_batch=4) as coll:  # queries in several batches too
        result = coll.search(Q, k=k)
    np.testing.assert_allclose(result.scores, best, atol=1e-5)
    assert all(len(set(row)) == k for row in result.ids)


def test_rerank_reproduces_exact_scores_and_preload_matches_streaming(tmp_path, fitted, data):
    path = tmp_path / "a.smz"
    write_archive(path, fitted["pq:M=8,K=16,opq=1"], data, block_items=256)
    Q = unit_rows(4, D, seed=14)
    plain = search_archive(path, Q, k=5)
    again = search_archive(path, Q, k=5, rerank=40)
    np.testing.assert_allclose(again.scores, plain.scores, atol=1e-5)
    with Collection([path], preload=True) as coll:
        cached = coll.search(Q, k=5)
    np.testing.assert_array_equal(cached.positions, plain.positions)


def test_k_larger_than_the_collection_returns_every_item(tmp_path, fitted, data):
    path = tmp_path / "small.smz"
    write_archive(path, fitted["f16"], data[:7])
    result = search_archive(path, data[:2], k=50)
    assert result.scores.shape == (2, 7) and sorted(result.ids[0]) == [str(i) for i in range(7)]
    assert result.ids[0][0] == "0" and result.ids[1][0] == "1"  # an item is its own best match


def test_several_archives_search_as_one(tmp_path, fitted, data):
    a, b = tmp_path / "a.smz", tmp_path / "b.smz"
    write_archive(a, fitted["pq:M=16,K=16,opq=1"], data[:1200], ids=[f"a{i}" for i in range(1200)])
    write_archive(b, fitted["int8"], data[1200:], ids=[f"b{i}" for i in range(1300)])  # codecs may differ
    Q = unit_rows(3, D, seed=15)
    with Archive.open(a) as x, Archive.open(b) as y:
        decoded = np.concatenate([x.decode(), y.decode()])
    top, best = brute_force(decoded, Q, 8)
    result = search_archive([a, b], Q, k=8)
    np.testing.assert_allclose(result.scores, best, atol=1e-5)
    names = [f"a{i}" for i in range(1200)] + [f"b{i}" for i in range(1300)]
    for i in range(3):
        assert set(result.ids[i]) == {names[j] for j in top[i]}
    assert set(np.unique(result.sources)) <= {0, 1}


def test_collection_refuses_duplicate_ids_and_other_widths(tmp_path, fitted, data):
    a, b = tmp_path / "a.smz", tmp_path / "b.smz"
    write_archive(a, fitted["f16"], data[:10])
    write_archive(b, fitted["f16"], data[10:20])
    with pytest.raises(InputError, match="id '0' is in both"):
        Collection([a, b])
    other = make_codec("f16").fit(unit_rows(10, 32))
    c = tmp_path / "c.smz"
    write_archive(c, other, unit_rows(10, 32), ids=[f"c{i}" for i in range(10)])
    with pytest.raises(InputError, match="widths 32 and 64 differ"):
        Collection([a, c])
    m = tmp_path / "m.smz"
    write_archive(m, fitted["f16"], data[:10], ids=[f"m{i}" for i in range(10)], model="ViT-L-14:openai")
    with pytest.raises(InputError, match="embedding models"):
        Collection([a, m])


def test_bad_queries_and_k(tmp_path, fitted, data):
    path = tmp_path / "a.smz"
    write_archive(path, fitted["f16"], data[:20])
    with pytest.raises(InputError, match=r"shape \(64,\) or \(q, 64\)"):
        search_archive(path, np.ones(63, np.float32))
    with pytest.raises(InputError, match="zero vector"):
        search_archive(path, np.zeros(D, np.float32))
    with pytest.raises(InputError, match="k must be a positive integer"):
        search_archive(path, data[0], k=0)
    with pytest.raises(InputError, match="no item with id 'nope'"):
        Collection([path]).vector("nope")


def test_classify_archive_equals_decoded_argmax(tmp_path, fitted, data):
    path = tmp_path / "a.smz"
    write_archive(path, fitted["pq:M=16,K=16,opq=1"], data, block_items=500)
    T = unit_rows(6, D, seed=16)
    names = [f"class{i}" for i in range(6)]
    predicted, scores = classify_archive(path, T, names)
    with Archive.open(path) as arc:
        R = arc.decode()
    S = (R / np.linalg.norm(R, axis=1, keepdims=True)) @ T.T
    assert predicted.shape == (2500,) and scores.dtype == np.float32
    assert (predicted == np.asarray(names)[S.argmax(axis=1)]).mean() > 0.999  # float ties aside
    np.testing.assert_allclose(scores, S.max(axis=1), atol=1e-5)
    with pytest.raises(InputError, match="3 labels given for 6"):
        classify_archive(path, T, names[:3])


def test_classify_real_zero_shot_matches_decoded(tmp_path, shared_data):
    z = np.load(shared_data / "clip-vit-b-32" / "zeroshot_caltech101.npz")
    X, y, T = z["image_features"].astype(np.float32), z["labels"], z["text_features"].astype(np.float32)
    codec = PQCodec(M=16, K=32, opq=False, niter=8).fit(X)
    path = tmp_path / "z.smz"
    write_archive(path, codec, X)
    predicted, _ = classify_archive(path, T, [str(c) for c in z["classnames"]])
    with Archive.open(path) as arc:
        R = arc.decode()
    expected = np.asarray([str(c) for c in z["classnames"]])[(R @ T.T).argmax(axis=1)]
    assert (predicted == expected).mean() > 0.999
    assert (predicted == np.asarray([str(c) for c in z["classnames"]])[y]).mean() > 0.7


def test_merge_copies_blocks_and_keeps_every_item(tmp_path, fitted, data):
    codec = fitted["pq:M=8,K=16,opq=1"]
    a, b, c, out = (tmp_path / n for n in ("a.smz", "b.smz", "c.smz", "out.smz"))
    write_archive(a, codec, data[:700], ids=[f"a{i}" for i in range(700)], block_items=256, pixels=np.full(700, 5))
    write_archive(b, codec, data[700:1000], ids=[f"b{i}" for i in range(300)], block_items=100, embed_codec=False)
    write_archive(c, codec, data[1000:1100], ids=[f"c{i}" for i in range(100)])
    merge_archives([a, b, c], out)
    with Archive.open(out) as m, Archive.open(a) as x, Archive.open(b, codec=codec) as y, Archive.open(c) as z:
        assert m.items == 1100 and m.ids == x.ids + y.ids + z.ids
        assert m.verify() == []
        np.testing.assert_array_equal(m.decode(), np.concatenate([x.decode(), y.decode(), z.decode()]))
        assert int(m.index["nbytes"].sum()) == sum(int(t.index["nbytes"].sum()) for t in (x, y, z))
        assert m.pixels is not None and m.pixels[:700].tolist() == [5] * 700 and m.pixels[700:].sum() == 0


def test_merge_refuses_other_codecs_duplicates_and_overwriting(tmp_path, fitted, data):
    a, b, out = tmp_path / "a.smz", tmp_path / "b.smz", tmp_path / "out.smz"
    write_archive(a, fitted["int8"], data[:10], ids=[f"a{i}" for i in range(10)])
    write_archive(b, fitted["f16"], data[:10], ids=[f"b{i}" for i in range(10)])
    with pytest.raises(CodecMismatchError, match="codec differs"):
        merge_archives([a, b], out)
    write_archive(b, fitted["int8"], data[:10], ids=[f"a{i}" for i in range(10)])
    with pytest.raises(InputError, match="'a0' appears in more than one"):
        merge_archives([a, b], out)
    with pytest.raises(InputError, match="is one of the archives"):
        merge_archives([a, b], a)
    assert not out.exists()


# ---- CLI -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def arc(tmp_path_factory, fitted, data):
    t = tmp_path_factory.mktemp("search")
    write_archive(t / "a.smz", fitted["pq:M=16,K=16,opq=1"], data[:1500], ids=[f"img/{i}.jpg" for i in range(1500)],
                  model="ViT-B-32:openai")
    return t / "a.smz"


def run(capsys, *argv):
    code = main([str(x) for x in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_search_like_and_vector(arc, data, capsys, tmp_path):
    code, out, _ = run(capsys, "search", arc, "--like", "img/7.jpg", "-k", "3", "--json")
    assert code == 0
    hits = json.loads(out)[0]["hits"]
    assert len(hits) == 3 and hits[0]["id"] == "img/7.jpg" and hits[0]["score"] == pytest.approx(1.0, abs=1e-5)
    np.save(tmp_path / "q.npy", data[3])
    code, out, _ = run(capsys, "search", arc, "--vector", tmp_path / "q.npy", "-k", "2", "--json")
    assert code == 0 and len(json.loads(out)[0]["hits"]) == 2
    np.save(tmp_path / "qs.npy", data[:3])
    code, out, _ = run(capsys, "search", arc, "--vector", tmp_path / "qs.npy", "-k", "4")
    assert code == 0 and out.count("rank") == 3


def test_cli_search_raw_rerank_and_several_archives(arc, fitted, data, capsys, tmp_path):
    write_archive(tmp_path / "b.smz", fitted["sign"], data[1500:1600], ids=[f"other/{i}" for i in range(100)],
                  model="ViT-B-32:openai")
    code, out, _ = run(capsys, "search", arc, tmp_path / "b.smz", "--like", "other/4", "-k", "2", "--rerank", "20", "--json")
    assert code == 0 and json.loads(out)[0]["hits"][0]["id"] == "other/4"
    code, out, _ = run(capsys, "search", arc, "--like", "img/9.jpg", "-k", "1", "--raw", "--json")
    raw = json.loads(out)[0]["hits"][0]["score"]
    with Archive.open(arc) as a:
        v = a.get("img/9.jpg")
    assert raw == pytest.approx(float(v @ v), abs=1e-4)  # a raw score: |x̂|^2, not a cosine of 1


def test_cli_search_bad_input(arc, capsys, tmp_path):
    code, _, err = run(capsys, "search", arc)
    assert code == 2 and "exactly one query kind" in err and "is not a file" not in err
    code, _, err = run(capsys, "search", arc, "a red car")  # a query where the archives go
    assert code == 2 and "'a red car' is not a file: a text query goes in --text 'a red car'" in err
    code, _, err = run(capsys, "search", arc, "--like", "nope")
    assert code == 2 and "no item with id 'nope'" in err
    np.save(tmp_path / "bad.npy", np.ones(10, np.float32))
    code, _, err = run(capsys, "search", arc, "--vector", tmp_path / "bad.npy")
    assert code == 2 and "shape (64,) or (q, 64)" in err


def test_cli_text_query_without_clip_says_what_to_install(arc, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "semzip.embed", None)  # import fails as when the extra is absent
    code, _, err = run(capsys, "search", arc, "--text", "a dog on a beach")
    assert code == 2 and "pip install 'semzip[clip]'" in err and "--like" in err


def test_cli_text_query_with_an_embedder(arc, data, capsys, monkeypatch):
    calls = []

    def embed_texts(texts, model, weights=None, device="cpu"):
        calls.append((list(texts), model))
        return data[[40 + i for i in range(len(texts))]]

    monkeypatch.setitem(sys.modules, "semzip.embed", types.SimpleNamespace(embed_texts=embed_texts))
    code, out, _ = run(capsys, "search", arc, "--text", "a dog", "--text", "a cat", "-k", "1", "--json")
    assert code == 0 and calls == [(["a dog", "a cat"], "ViT-B-32:openai")]
    result = json.loads(out)
    assert [r["query"] for r in result] == ["a dog", "a cat"]
    assert [r["hits"][0]["id"] for r in result] == ["img/40.jpg", "img/41.jpg"]


def test_cli_text_query_with_local_weights_and_model_checks(arc, data, capsys, monkeypatch, tmp_path):
    """--model/--weights/--device reach the embedder; another model's space or width is refused."""
    calls = []

    def embed_texts(texts, model, weights=None, device="cpu"):
        calls.append((model, weights, device))
        return data[:len(texts)] if model == "ViT-B-32:openai" else np.ones((len(texts), 7), np.float32)

    monkeypatch.setitem(sys.modules, "semzip.embed", types.SimpleNamespace(embed_texts=embed_texts))
    weights = tmp_path / "clip.safetensors"
    code, _, err = run(capsys, "search", arc, "--text", "a dog", "--weights", weights, "--device", "cpu")
    assert code == 0 and calls == [("ViT-B-32:openai", weights, "cpu")]
    code, _, err = run(capsys, "search", arc, "--text", "a dog", "--model", "ViT-L-14:openai")
    assert code == 2 and "ViT-B-32:openai embeddings" in err and "ViT-L-14:openai" in err
    unknown = tmp_path / "unknown.smz"
    write_archive(unknown, make_codec("f16").fit(data[:10]), data[:10], model="unknown")
    code, _, err = run(capsys, "search", unknown, "--text", "a dog")
    assert code == 2 and "does not record its embedding model" in err and "--model" in err
    code, _, err = run(capsys, "search", unknown, "--text", "a dog", "--model", "RN50:openai")
    assert code == 2 and "gives 7-d embeddings but the archive holds" in err


def test_cli_classify_with_precomputed_text_embeddings(arc, data, capsys, tmp_path):
    np.savez(tmp_path / "text.npz", text_features=data[[0, 500, 1000]], classnames=np.array(["zero", "five", "ten"]))
    code, out, _ = run(capsys, "classify", arc, "--text-embeddings", f"{tmp_path / 'text.npz'}:text_features",
                       "--labels-from", "classnames", "-o", tmp_path / "labels.csv", "--json")
    assert code == 0
    summary = json.loads(out)
    assert summary["items"] == 1500 and sum(summary["counts"].values()) == 1500
    lines = (tmp_path / "labels.csv").read_text().splitlines()
    assert lines[0] == "id,label,score" and len(lines) == 1501
    by_id = {line.split(",")[0]: line.split(",")[1] for line in lines[1:]}
    assert (by_id["img/0.jpg"], by_id["img/500.jpg"], by_id["img/1000.jpg"]) == ("zero", "five", "ten")
    (tmp_path / "names.txt").write_text("a\nb\n")
    code, _, err = run(capsys, "classify", arc, "--text-embeddings", f"{tmp_path / 'text.npz'}:text_features",
                       "--labels-from", tmp_path / "names.txt")
    assert code == 2 and "2 labels given for 3" in err


def test_cli_merge(fitted, data, capsys, tmp_path):
    codec = fitted["int8"]
    write_archive(tmp_path / "a.smz", codec, data[:5], ids=list("abcde"))
    write_archive(tmp_path / "b.smz", codec, data[5:8], ids=list("xyz"))
    code, out, _ = run(capsys, "merge", tmp_path / "a.smz", tmp_path / "b.smz", "-o", tmp_path / "m.smz")
    assert code == 0 and "8 items" in out
    code, out, _ = run(capsys, "search", tmp_path / "m.smz", "--like", "y", "-k", "1", "--json")
    assert json.loads(out)[0]["hits"][0]["id"] == "y"
    code, _, err = run(capsys, "merge", tmp_path / "a.smz", tmp_path / "a.smz", "-o", tmp_path / "n.smz")
    assert code == 2 and "appears in more than one" in err


def test_archive_rows_decodes_any_positions(tmp_path, fitted, data):
    path = tmp_path / "a.smz"
    write_archive(path, fitted["int8"], data[:100], block_items=16)
    with Archive.open(path) as arc:
        full = arc.decode()
        pos = [99, 3, 3, 50, 0]
        np.testing.assert_array_equal(arc.rows(pos), full[pos])
        assert arc.rows([]).shape == (0, D)
        with pytest.raises(InputError, match=r"positions must be in \[0, 100\)"):
            arc.rows([100])


# ---- fast scan (4-bit PQ through faiss) -----------------------------------------------------------
@pytest.fixture(scope="module")
def varied():
    """Unit vectors around few centres: PQ reconstructions of these have widely varying norms."""
    return unit_rows(6000, D, seed=21, clusters=5)


@pytest.fixture(scope="module")
def fast_codec(varied):
    return make_codec("pq:M=16,K=16,opq=1,raw=1").fit(varied[:2000])


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("k", [1, 10, 120])
def test_fast_scan_search_equals_exact_search(tmp_path, fast_codec, varied, monkeypatch, normalize, k):
    import semzip.codecs._fastscan as fastscan

    calls = []
    original = fastscan.FastScanRanker.__call__
    monkeypatch.setattr(fastscan.FastScanRanker, "__call__", lambda self, *a: calls.append(1) or original(self, *a))
    path = tmp_path / "a.smz"
    write_archive(path, fast_codec, varied, block_items=256)
    Q = unit_rows(40, D, seed=22, clusters=5) * 2.0
    with Archive.open(path) as arc:
        decoded = arc.decode()
    _, best = brute_force(decoded, Q, k, normalize)
    # several runs, a short last one; short first shortlists, so the retry path runs too
    with Collection([path], fast_chunk_items=1500, fast_shortlist=4) as coll:
        result = coll.search(Q, k=k, normalize=normalize)
    assert calls, "the fast path was not taken"
    np.testing.assert_allclose(result.scores, best, rtol=1e-5, atol=1e-5)
    R = decoded / np.linalg.norm(decoded, axis=1, keepdims=True) if normalize else decoded
    Qn = Q / np.linalg.norm(Q, axis=1, keepdims=True) if normalize else Q
    np.testing.assert_allclose(np.einsum("qkd,qd->qk", R[result.positions], Qn), result.scores, rtol=1e-5, atol=1e-5)
    assert all(len(set(row)) == k for row in result.ids)
    with Collection([path], preload=True) as coll:
        cached = coll.search(Q, k=k, normalize=normalize)
    np.testing.assert_allclose(cached.scores, result.scores, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("spec", ["pq:M=4,K=16,opq=0", "pq:M=16,K=16,opq=1"])
@pytest.mark.parametrize("normalize", [True, False])
def test_fast_scan_shortlists_are_complete(varied, spec, normalize):
    """With one-item first shortlists, only the completeness test (quantisation bound, norm range)
    decides when to stop: every query's best items must still all be found, with exact scores.
    (Dropping the bound or the rounding term makes some of these 200 queries miss their best item.)"""
    codec = make_codec(spec).fit(varied[:2000])
    codes = codec.quantize(varied)
    S = codec.scores(codes, unit_rows(200, D, seed=22, clusters=5))
    if normalize:
        S /= codec.norms(codes)[:, None]
    index = codec.fast_index(codes)
    ranker = codec.fast_ranker(unit_rows(200, D, seed=22, clusters=5), normalize, shortlist=1)
    for keep in (1, 5):
        positions, scores = ranker(index, keep, np.full(200, -np.inf))
        np.testing.assert_allclose(-np.sort(-scores, axis=1)[:, :keep], -np.sort(-S, axis=0)[:keep].T, atol=1e-5)
        valid = positions >= 0
        np.testing.assert_allclose(scores[valid], S[positions[valid], np.nonzero(valid)[0]], atol=1e-5)


def test_fast_scan_bounds_hold(fast_codec, varied):
    """The quantisation bound covers faiss's rounding of every item's sum, and the norm range holds
    every reconstruction norm (the two facts the completeness test rests on)."""
    from semzip.codecs._fastscan import FastScanIndex, FastScanRanker, _quantisation_error

    codes = fast_codec.quantize(varied)
    index = FastScanIndex(fast_codec.centroids_, codes["codes"])
    norms = fast_codec.norms(codes)
    assert index.norm_lo <= norms.min() and norms.max() <= index.norm_hi
    assert index.norm_hi - index.norm_lo < 1.2 * (norms.max() - norms.min()) + 0.02
    Q = unit_rows(5, D, seed=23)
    ranker = FastScanRanker(fast_codec.centroids_, fast_codec.rotate(Q), normalize=True)
    beta = np.array([0.0, 0.2, 0.4, 0.6, 0.8])
    approx, found = index.index.search(ranker._wide(np.arange(5), beta), len(varied))
    exact = (fast_codec.scores(codes, Q) - beta[None, :] * norms[:, None] ** 2).T
    err = np.abs(approx - np.take_along_axis(exact, found, axis=1)).max(axis=1)
    tables = ranker.tables - beta[:, None, None].astype(np.float32) * index.sqnorms[None]
    bound = _quantisation_error(tables)
    assert (err <= bound).all() and (err > 0).all()  # approximate, within the bound
    assert (bound < 0.02).all()  # and the bound is tight enough to prune with


def test_preload_keeps_compact_codes_and_classifies_like_streaming(tmp_path, fast_codec, varied):
    dense = make_codec("pq:M=8,K=256,opq=0").fit(varied[:1000])
    a, b = tmp_path / "a.smz", tmp_path / "b.smz"
    write_archive(a, dense, varied[:3000], block_items=500)
    write_archive(b, fast_codec, varied[3000:], ids=[f"b{i}" for i in range(3000)], block_items=500)
    T = unit_rows(6, D, seed=24)
    names = [f"c{i}" for i in range(6)]
    with Collection([a, b], preload=True) as coll:
        runs = coll._cache
        assert all(r.codes["codes"].dtype == np.uint8 and r.index is None for r in runs[0])
        assert all(r.index is not None and r.codes is None for r in runs[1])  # the fast index only
        cached = coll.classify(T, names)
        hits = coll.search(T, k=7)
    with Collection([a, b]) as coll:
        streamed = coll.classify(T, names)
        np.testing.assert_array_equal(coll.search(T, k=7).positions, hits.positions)
    np.testing.assert_array_equal(cached[0], streamed[0])
    np.testing.assert_allclose(cached[1], streamed[1], atol=1e-6)


def test_pq_single_query_scores_match_the_reconstruction(varied):
    codec = make_codec("pq:M=8,K=256,opq=1").fit(varied[:1000])
    codes = codec.quantize(varied[:500])
    assert codes["codes"].dtype == np.uint8
    Q = unit_rows(3, D, seed=25)
    R = codec.reconstruct(codes)
    np.testing.assert_allclose(codec.scores(codes, Q[:1]), R @ Q[:1].T, atol=1e-5)  # gather path
    np.testing.assert_allclose(codec.scores(codes, Q), R @ Q.T, atol=1e-5)  # sparse product path
    assert codec.fast_index(codes) is None and codec.fast_ranker(Q, True) is None  # no fast scan for K=256


@pytest.mark.portability
@pytest.mark.parametrize("spec", ["pq:M=8,K=16,opq=1", "sign"])
def test_ties_go_to_the_earlier_item_whatever_the_runs(tmp_path, fitted, data, spec):
    """Every item is stored 6 times, so cuts fall inside groups of identical codes: on the fast and
    the generic path, results must be a true top-k (scores within float32 rounding of the decoded
    vectors'), and inside each group of identical codes the earlier items come first and are kept."""
    items = np.random.default_rng(30).permutation(np.tile(data[:400], (6, 1)))
    a, b = tmp_path / "a.smz", tmp_path / "b.smz"
    write_archive(a, fitted[spec], items[:1300], block_items=128)
    write_archive(b, fitted[spec], items[1300:], ids=[f"b{i}" for i in range(1100)], block_items=128)
    Q = unit_rows(8, D, seed=31)
    with Archive.open(a) as x, Archive.open(b) as y:
        decoded = np.concatenate([x.decode(), y.decode()])
    # ties are defined by codes: each distinct decoded vector is scored once and broadcast to its group
    distinct, group = np.unique(decoded, axis=0, return_inverse=True)
    group = group.ravel()
    unit = distinct.astype(np.float64) / np.linalg.norm(distinct, axis=1, keepdims=True)
    S = (Q / np.linalg.norm(Q, axis=1, keepdims=True)).astype(np.float64) @ unit.T
    S = S[:, group]
    for k in (1, 9, 40):
        with Collection([a, b], chunk_items=700, fast_chunk_items=700, fast_shortlist=2) as coll:
            result = coll.search(Q, k=k)
        found = np.where(result.sources == 0, result.positions, 1300 + result.positions)
        assert (np.diff(np.sort(S, axis=1)[:, ::-1][:, : k + 1], axis=1) == 0).any()  # a cut inside a group
        for qi in range(len(Q)):
            np.testing.assert_allclose(result.scores[qi], S[qi, found[qi]], atol=1e-5)
            assert S[qi, found[qi]].min() >= np.sort(S[qi])[::-1][k - 1] - 1e-5  # a true top-k
            for g in np.unique(group[found[qi]]):
                members = np.flatnonzero(group == g)  # collection order
                kept = found[qi][group[found[qi]] == g]  # in result order
                np.testing.assert_array_equal(kept, members[: len(kept)])
