"""IVF: inverted lists beside an archive. With every list probed the results are the flat search's
(ids and order, ties included; scores to float32 rounding, as each query's lookup table is made
alone); fewer lists trade recall for speed; an index is refused for any archive but its own, and
when damaged."""

import json

import numpy as np
import pytest

from semzip import FormatError, InputError, make_codec
from semzip.cli import main
from semzip._validate import l2_normalize
from semzip.container import Archive, append_archive, write_archive
from semzip.search import Collection
from semzip.search._ivf import IVFSearcher, build_ivf

from .utils import unit_rows


@pytest.fixture(scope="module")
def data():
    X = unit_rows(6000, 48, seed=1, clusters=40)
    return np.concatenate([X, X[:300]])  # 300 exact duplicates: ties the flat search orders by position


@pytest.mark.parametrize("spec", ["pq:M=8,K=256,opq=1", "pq:M=16,K=16,opq=1,raw=1", "pq:M=8,K=64,opq=0", "int8", "f16",
                                  "rq:M=4,K=64,beam=2"])
@pytest.mark.parametrize("normalize", [True, False])
def test_probing_every_list_is_the_flat_search(tmp_path, data, spec, normalize):
    write_archive(tmp_path / "a.smz", make_codec(spec).fit(data[:3000]), data, block_items=500)
    Q = np.concatenate([data[:5], unit_rows(27, 48, seed=2, clusters=40)])
    with Archive.open(tmp_path / "a.smz") as arc:
        info = build_ivf(arc, nlist=32)
        assert info["nlist"] == 32 and info["path"].endswith("a.smz.ivf")
        ivf = IVFSearcher(arc)
        with Collection([arc]) as coll:
            flat = coll.search(Q, 12, normalize=normalize)
        runs = [ivf.search(Q, 12, nprobe=32, normalize=normalize, shortlist=0)]  # every probed item scored here
        if spec.startswith("pq"):  # faiss (K=16: fast-scan; K=64: shortlist by inner product), nothing cut
            runs.append(ivf.search(Q, 12, nprobe=32, normalize=normalize, shortlist=len(data)))
            short = ivf.search(Q, 12, nprobe=32, normalize=normalize)  # the default shortlist
            assert np.mean([len(set(a) & set(b)) / 12 for a, b in zip(short.ids, flat.ids)]) >= 0.98
        alone = ivf.search(Q[7:8], 12, nprobe=32, normalize=normalize, shortlist=0)
    for got in runs:
        assert got.ids == flat.ids
        np.testing.assert_array_equal(got.positions, flat.positions)
        np.testing.assert_allclose(got.scores, flat.scores, rtol=1e-6, atol=1e-6)
    got = runs[0]
    assert alone.ids[0] == got.ids[7] and alone.scores.tobytes() == got.scores[7:8].tobytes()  # batch-independent


@pytest.mark.parametrize("spec", ["pq:M=16,K=16,opq=1,raw=1", "pq:M=8,K=256,opq=1"])
@pytest.mark.parametrize("normalize", [True, False])
def test_fast_scan_lists_are_exact_over_the_probed_lists(tmp_path, data, spec, normalize):
    """4- and 8-bit pq: faiss's IVF scan only draws shortlists, and a bound proves each complete (or
    it is drawn again, longer), so every nprobe and first shortlist gives the numpy scan's top-k."""
    write_archive(tmp_path / "a.smz", make_codec(spec).fit(data[:3000]), data, block_items=500)
    Q = np.concatenate([data[:5], unit_rows(40, 48, seed=4, clusters=40)])
    with Archive.open(tmp_path / "a.smz") as arc:
        build_ivf(arc, nlist=32)
        ivf = IVFSearcher(arc)
        for nprobe in (1, 3, 8):
            numpy_scan = ivf.search(Q, 10, nprobe=nprobe, normalize=normalize, shortlist=0)
            for shortlist in (None, 10, 2000):
                got = ivf.search(Q, 10, nprobe=nprobe, normalize=normalize, shortlist=shortlist)
                assert got.ids == numpy_scan.ids
                np.testing.assert_allclose(got.scores, numpy_scan.scores, rtol=1e-6, atol=1e-6)
        with pytest.raises(InputError, match="shortlist must be positive"):
            ivf.search(Q, 10, nprobe=4, shortlist=-1)


def test_fast_scan_lists_bound_the_norms_of_what_each_query_scans(tmp_path, data):
    """The cosine test rests on [lo, hi] holding every scanned item's norm: per query, the range over
    its probed lists (empty lists ignored), no wider than the archive's."""
    write_archive(tmp_path / "a.smz", make_codec("pq:M=16,K=16,opq=1").fit(data[:3000]), data, block_items=500)
    with Archive.open(tmp_path / "a.smz") as arc:
        build_ivf(arc, nlist=32)
        ivf = IVFSearcher(arc)
        lists, scores = ivf._probes(unit_rows(20, 48, seed=5, clusters=40), 3)
        ivf._fast.probe(lists, scores)
        lo, hi = ivf._fast.norm_range(np.arange(20))
        for q in range(20):
            scanned = np.concatenate([ivf.norms[ivf.offsets[j] : ivf.offsets[j + 1]] for j in lists[q]])
            assert lo[q] <= scanned.min() and scanned.max() <= hi[q]
        assert (lo >= float(ivf.norms.min()) * (1 - 1e-6)).all() and (hi <= float(ivf.norms.max()) * (1 + 1e-6)).all()
        assert (hi - lo).mean() < ivf.norms.max() - ivf.norms.min()  # narrower than the archive's range


def test_fewer_lists_lower_recall_and_scan_less(tmp_path, data):
    write_archive(tmp_path / "a.smz", make_codec("pq:M=8,K=256,opq=0").fit(data[:3000]), data, block_items=500)
    Q = unit_rows(60, 48, seed=3, clusters=40)
    with Archive.open(tmp_path / "a.smz") as arc:
        build_ivf(arc, nlist=64)
        ivf = IVFSearcher(arc)
        with Collection([arc]) as coll:
            flat = coll.search(Q, 10)
        recall = {p: np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ivf.search(Q, 10, nprobe=p).ids, flat.ids)])
                  for p in (1, 4, 16, 64)}
    assert recall[1] < recall[4] <= recall[16] <= recall[64] == 1.0
    assert recall[16] > 0.9 and recall[1] < 0.95  # the partition prunes, and nearby lists hold the hits


def test_an_index_is_bound_to_its_archive_and_checked(tmp_path, data):
    codec = make_codec("int8").fit(data)
    write_archive(tmp_path / "a.smz", codec, data[:2000])
    write_archive(tmp_path / "b.smz", codec, data[:2000], ids=[f"b{i}" for i in range(2000)])
    with Archive.open(tmp_path / "a.smz") as arc:
        build_ivf(arc, nlist=16)
        with pytest.raises(InputError, match="nlist must be"):
            build_ivf(arc, nlist=0)
    with Archive.open(tmp_path / "b.smz") as other, pytest.raises(FormatError, match="another version"):
        IVFSearcher(other, tmp_path / "a.smz.ivf")
    with Archive.open(tmp_path / "b.smz") as other, pytest.raises(InputError, match="semzip index"):
        IVFSearcher(other)  # no b.smz.ivf
    raw = bytearray((tmp_path / "a.smz.ivf").read_bytes())
    raw[-5] ^= 1
    (tmp_path / "bad.ivf").write_bytes(bytes(raw))
    with Archive.open(tmp_path / "a.smz") as arc, pytest.raises(FormatError, match="damaged"):
        IVFSearcher(arc, tmp_path / "bad.ivf")
    good = (tmp_path / "a.smz.ivf").read_bytes()
    hlen = int.from_bytes(good[8:12], "little")
    head = json.loads(good[12 : 12 + hlen])
    for key in ("archive", "sha256", "seed", "assigned_on"):  # a header without a field is refused, not a KeyError
        blob = json.dumps({k: v for k, v in head.items() if k != key}).encode()
        (tmp_path / "nokey.ivf").write_bytes(good[:8] + len(blob).to_bytes(4, "little") + blob + good[12 + hlen :])
        with Archive.open(tmp_path / "a.smz") as arc, pytest.raises(FormatError, match="unreadable IVF header"):
            IVFSearcher(arc, tmp_path / "nokey.ivf")
    for bad in ({"assigned_on": "magic"}, {"updates": {"appended": -1, "deleted": 0}}, {"updates": [1, 2]},
                {"updates": {"appended": "x", "deleted": 0}}):  # and fields an append would act on, when wrong
        blob = json.dumps({**head, **bad}).encode()
        (tmp_path / "bad.ivf").write_bytes(good[:8] + len(blob).to_bytes(4, "little") + blob + good[12 + hlen :])
        with Archive.open(tmp_path / "a.smz") as arc, pytest.raises(FormatError, match="unreadable IVF header"):
            IVFSearcher(arc, tmp_path / "bad.ivf")
    (tmp_path / "junk.ivf").write_bytes(b"not an index")
    with Archive.open(tmp_path / "a.smz") as arc, pytest.raises(FormatError, match="not a semzip IVF"):
        IVFSearcher(arc, tmp_path / "junk.ivf")
    append_archive(tmp_path / "a.smz", data[2000:2100])  # the archive changed: its index is stale
    with Archive.open(tmp_path / "a.smz") as arc, pytest.raises(FormatError, match="rebuild"):
        IVFSearcher(arc)


def test_cli_index_and_search_nprobe(tmp_path, data, capsys):
    ids = [f"i{i}" for i in range(len(data))]
    write_archive(tmp_path / "a.smz", make_codec("pq:M=8,K=16,opq=0").fit(data[:3000]), data, ids=ids)
    np.save(tmp_path / "q.npy", data[:4])
    assert main(["index", str(tmp_path / "a.smz"), "--nlist", "16", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["nlist"] == 16
    base = ["search", str(tmp_path / "a.smz"), "--vector", str(tmp_path / "q.npy"), "-k", "5", "--json"]
    assert main(base) == 0
    flat = json.loads(capsys.readouterr().out)
    assert main(base + ["--nprobe", "16"]) == 0  # K=16: the flat search takes the fast-scan path,
    got = json.loads(capsys.readouterr().out)  # whose sums round differently in the last bit
    assert [[h["id"] for h in r["hits"]] for r in got] == [[h["id"] for h in r["hits"]] for r in flat]
    np.testing.assert_allclose([[h["score"] for h in r["hits"]] for r in got],
                               [[h["score"] for h in r["hits"]] for r in flat], atol=1e-6)
    assert main(base + ["--nprobe", "2"]) == 0
    assert main(base + ["--nprobe", "17"]) == 2
    assert "nprobe must be between 1 and the index's 16 lists" in capsys.readouterr().err
    assert main(base + ["--nprobe", "4", "--rerank", "10"]) == 2
    assert main(["index", str(tmp_path)]) == 2  # a folder that is no sharded collection
    assert "sharded collection" in capsys.readouterr().err


@pytest.mark.parametrize("spec", ["pq:M=8,K=256,opq=1", "int8"])
def test_several_indexed_archives_probed_fully_are_the_flat_search(tmp_path, data, spec):
    """Each archive searched with its own index, merged: ids, archives and positions as the flat
    search over all of them, ties (the same items in both archives) to the earlier archive."""
    from semzip.search._ivf import search_ivf

    codec = make_codec(spec).fit(data[:3000])
    write_archive(tmp_path / "a.smz", codec, data[:4000], block_items=500)
    write_archive(tmp_path / "b.smz", codec, data[3700:], ids=[f"b{i}" for i in range(len(data) - 3700)])
    Q = np.concatenate([data[3700:3705], unit_rows(11, 48, seed=2, clusters=40)])
    with Archive.open(tmp_path / "a.smz") as a, Archive.open(tmp_path / "b.smz") as b:
        build_ivf(a, nlist=32)
        build_ivf(b, nlist=16)
        with Collection([a, b]) as coll:
            flat = coll.search(Q, 9)
        got = search_ivf([a, b], Q, 9, nprobe=32, shortlist=0)  # 32 lists of a, all 16 of b
        some = search_ivf([a, b], Q, 9, nprobe=4)
        with pytest.raises(InputError, match="nprobe must be between 1"):
            search_ivf([a, b], Q, 9, nprobe=33)
    assert got.ids == flat.ids
    np.testing.assert_array_equal(got.sources, flat.sources)
    np.testing.assert_array_equal(got.positions, flat.positions)
    np.testing.assert_allclose(got.scores, flat.scores, rtol=1e-6, atol=1e-6)
    assert (flat.sources[:5, 0] == 0).all()  # the duplicated items: a's copy first
    assert np.mean([len(set(x) & set(y)) / 9 for x, y in zip(some.ids, flat.ids)]) > 0.5


@pytest.mark.parametrize("spec", ["rq:M=4,K=64,beam=2", "pqvae:dim=8,K=16,grid=2,C=16,H=16,blocks=1,coarse=4",
                                  "coarse:bits=4+pq:M=8,K=16,opq=0"])
def test_lists_from_the_codes_first_stage(tmp_path, data, spec):
    """`lists="codes"`: the codec's first stage is the partition (no clustering): each list holds
    exactly the items whose code starts with its index; probing every list is the flat search."""
    codec = make_codec(spec).fit(data[:3000])
    write_archive(tmp_path / "a.smz", codec, data, block_items=700)
    Q = np.concatenate([data[:5], unit_rows(11, 48, seed=2, clusters=40)])
    with Archive.open(tmp_path / "a.smz") as arc:
        info = build_ivf(arc, lists="codes")
        L = len(codec.partition_centroids())
        assert info["nlist"] == L == (64 if spec.startswith("rq") else 16)
        first = np.concatenate([codec.partition_of(c) for _, c in arc.iter_codes()])
        ivf = IVFSearcher(arc)
        for lst in (0, L // 2, L - 1):
            members = ivf.positions[ivf.offsets[lst] : ivf.offsets[lst + 1]]
            np.testing.assert_array_equal(members, np.flatnonzero(first == lst))
        with Collection([arc]) as coll:
            flat = coll.search(Q, 8)
        got = ivf.search(Q, 8, nprobe=L, shortlist=0)
        with pytest.raises(InputError, match="cannot be chosen"):
            build_ivf(arc, lists="codes", nlist=L // 2)
    assert got.ids == flat.ids
    np.testing.assert_allclose(got.scores, flat.scores, rtol=1e-6, atol=1e-6)


def test_lists_from_codes_need_a_first_stage(tmp_path, data, capsys):
    write_archive(tmp_path / "a.smz", make_codec("int8").fit(data[:100]), data[:500])
    assert main(["index", str(tmp_path / "a.smz"), "--lists", "codes"]) == 2
    assert "no first-stage index" in capsys.readouterr().err
    assert main(["index", str(tmp_path / "a.smz"), "--lists", "pq"]) == 2
    assert "'kmeans' or 'codes'" in capsys.readouterr().err


def _lists_of(ivf: IVFSearcher) -> np.ndarray:
    """Each archive position's list, read from an index."""
    lists = np.empty(len(ivf.positions), dtype=np.int64)
    lists[ivf.positions] = np.repeat(np.arange(ivf.nlist), np.diff(ivf.offsets))
    return lists


@pytest.mark.parametrize("spec,lists", [("pq:M=8,K=256,opq=1", "kmeans"), ("pq:M=16,K=16,opq=1,raw=1", "kmeans"),
                                        ("rq:M=4,K=64,beam=2", "codes")])
def test_append_and_delete_keep_the_index_current(tmp_path, data, spec, lists):
    """Inside `index_follows`, an append or delete carries the index over: the centroids stay, kept
    items keep their lists, new ones join theirs by the index's own rule, so the lists are those
    that assigning every item afresh gives, and probing every list is still the flat search."""
    from semzip.container import delete_items
    from semzip.search._ivf import index_follows

    codec = make_codec(spec).fit(data[:3000])
    path = tmp_path / "a.smz"
    write_archive(path, codec, data[:2500], ids=[f"i{i}" for i in range(2500)], block_items=400)
    with Archive.open(path) as arc:
        build_ivf(arc, nlist=None if lists == "codes" else 16, lists=lists)
        centroids = IVFSearcher(arc).centroids.copy()
    with index_follows(path) as report:
        append_archive(path, data[2500:3300], ids=[f"n{i}" for i in range(800)])
    assert report == {"path": str(path) + ".ivf", "status": "updated", "appended": 800, "deleted": 0, "items": 3300,
                      "since_build": {"appended": 800, "deleted": 0}}
    gone = ["i0", "i7", "i1999", "n5", "n799"]
    with index_follows(path) as report:
        delete_items(path, gone)
    assert report["status"] == "updated" and (report["appended"], report["deleted"]) == (0, 5)
    Q = np.concatenate([data[1:4], unit_rows(9, 48, seed=6, clusters=40)])
    with Archive.open(path) as arc:
        ivf = IVFSearcher(arc)
        assert ivf.head["updates"] == {"appended": 800, "deleted": 5}
        np.testing.assert_array_equal(ivf.centroids, centroids)
        if lists == "codes":
            fresh = np.concatenate([codec.partition_of(c) for _, c in arc.iter_codes()])
        else:
            fresh = np.argmax(l2_normalize(arc.decode()) @ centroids.T, axis=1)
        np.testing.assert_array_equal(_lists_of(ivf), fresh)
        with Collection([arc]) as coll:
            flat = coll.search(Q, 8)
        got = ivf.search(Q, 8, nprobe=ivf.nlist, shortlist=0)
    assert got.ids == flat.ids and not set(gone) & {i for row in got.ids for i in row}


def test_cli_append_and_delete_keep_the_index_or_say_it_is_stale(tmp_path, data, capsys):
    path, q = tmp_path / "a.smz", tmp_path / "q.npy"
    write_archive(path, make_codec("int8").fit(data[:3000]), data[:2000])  # near-exact: each item finds itself
    np.save(tmp_path / "more.npy", data[2000:2600])
    np.save(tmp_path / "wide.npy", unit_rows(10, 64, seed=3))
    np.save(q, data[2000:2003])
    assert main(["index", str(path), "--nlist", "16"]) == 0
    assert main(["append", str(path), str(tmp_path / "more.npy"), "--id-prefix", "m"]) == 0
    assert f"{path}.ivf kept current (+600 -0 items in its lists)\n" in capsys.readouterr().out
    assert main(["search", str(path), "--vector", str(q), "-k", "1", "--nprobe", "16", "--json"]) == 0
    assert [r["hits"][0]["id"] for r in json.loads(capsys.readouterr().out)] == ["m0", "m1", "m2"]
    before = (tmp_path / "a.smz.ivf").read_bytes()
    assert main(["append", str(path), str(tmp_path / "wide.npy")]) == 2  # refused: archive and index untouched
    capsys.readouterr()
    assert (tmp_path / "a.smz.ivf").read_bytes() == before
    assert main(["delete", str(path), "m1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["items"] == 2599 and out["ivf"]["status"] == "updated" and out["ivf"]["deleted"] == 1
    np.save(tmp_path / "most.npy", data[2600:5600])  # more items than the lists were made on: a rebuild is suggested
    assert main(["append", str(path), str(tmp_path / "most.npy"), "--id-prefix", "z"]) == 0
    assert "3600 of its 5599 items came after its lists were made: `semzip index`" in capsys.readouterr().out
    append_archive(path, data[5600:5610], ids=[f"x{i}" for i in range(10)])  # the library alone: index now stale
    stale = (tmp_path / "a.smz.ivf").read_bytes()
    assert main(["delete", str(path), "x3"]) == 0
    assert "a.smz.ivf was not updated" in capsys.readouterr().err
    assert (tmp_path / "a.smz.ivf").read_bytes() == stale  # left as it was, refused until rebuilt
    assert main(["search", str(path), "--vector", str(q), "--nprobe", "4"]) == 3
    assert "rebuild" in capsys.readouterr().err
    assert main(["append", str(tmp_path / "b.smz"), str(tmp_path / "more.npy"), "--json"]) != 0  # no archive, no index


def test_codes_are_gathered_in_list_order_block_by_block():
    """The searcher's codes: item i at row[i], one array per key, widened where a later block's
    codes are wider (as concatenating the blocks would)."""
    from semzip.search._ivf import _in_list_order

    class Blocks:
        def iter_codes(self):
            yield 0, {"codes": np.array([[1, 2], [3, 4]], dtype=np.uint8), "stages": np.array([1, 2], dtype=np.uint8)}
            yield 2, {"codes": np.array([[300, 6]], dtype=np.uint16), "stages": np.array([3], dtype=np.uint8)}

    out = _in_list_order(Blocks(), np.array([2, 0, 1]))
    np.testing.assert_array_equal(out["codes"], np.array([[3, 4], [300, 6], [1, 2]], dtype=np.uint16), strict=True)
    np.testing.assert_array_equal(out["stages"], np.array([2, 3, 1], dtype=np.uint8), strict=True)
