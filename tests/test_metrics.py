import numpy as np
import pytest

from semzip import InputError
from semzip.eval import cosine_to_reference, nearest_centroid_topk, retrieval_recall, zero_shot_topk

E = np.eye(4, dtype=np.float32)


def test_zero_shot_on_a_hand_made_case():
    images = np.array([[1, 0.1, 0, 0], [0, 1, 0.2, 0], [1, 0, 0.9, 0]], np.float32)  # true classes 0, 1, 2; the last looks like 0
    assert zero_shot_topk(images, E[:3], [0, 1, 2]) == pytest.approx(2 / 3)
    assert zero_shot_topk(images, E[:3], [0, 1, 2], k=2) == 1.0


def test_nearest_centroid_on_a_hand_made_case():
    train = np.array([[1, 0.1, 0, 0], [1, -0.1, 0, 0], [0, 0, 1, 0.1], [0, 0, 1, -0.1]], np.float32)
    test = np.array([[0.9, 0.2, 0.1, 0], [0.1, 0, 1, 0], [0.2, 0, 0.9, 0]], np.float32)
    assert nearest_centroid_topk(train, [5, 5, 7, 7], test, [5, 7, 5]) == pytest.approx(2 / 3)
    with pytest.raises(InputError, match="absent from the training labels"):
        nearest_centroid_topk(train, [5, 5, 7, 7], test, [5, 7, 9])


def test_retrieval_recall_with_a_known_permutation():
    texts = E
    images = E[[0, 1, 3, 2]]  # items 2 and 3 swapped: only 0 and 1 are found at rank 1
    r = retrieval_recall(images, texts, ks=(1, 4))
    assert r["i2t@1"] == r["t2i@1"] == 0.5
    assert r["i2t@4"] == r["t2i@4"] == 1.0
    with pytest.raises(InputError, match="paired rows"):
        retrieval_recall(E[:3], E)


def test_cosine_to_reference():
    np.testing.assert_allclose(cosine_to_reference(2 * E, E), 1.0)
    np.testing.assert_allclose(cosine_to_reference(E[[1, 0, 2, 3]], E), [0, 0, 1, 1])


def test_label_errors_are_clear():
    with pytest.raises(InputError, match="labels must index"):
        zero_shot_topk(E, E[:2], [0, 1, 2, 3])
    with pytest.raises(InputError, match="expected 4 integer labels"):
        zero_shot_topk(E, E, [0.5, 1, 2, 3])


@pytest.mark.portability
def test_ties_go_to_the_earlier_item_wherever_they_sit():
    """Identical vectors (a collection codec gives many items the same one) score identically and
    tie at the cut, which goes to the earlier item on every BLAS and batch: recall does not depend
    on the machine."""
    texts = np.eye(300, dtype=np.float32)
    images = texts.copy()
    images[250] = images[10]  # caption 10 finds images 10 and 250 tied: 10 first, a hit
    r = retrieval_recall(images, texts, ks=(1, 4))  # caption 250 scores every image 0: images 0-3 first
    assert r["t2i@1"] == r["t2i@4"] == pytest.approx(299 / 300)
    assert r["i2t@1"] == pytest.approx(299 / 300)  # image 250 (= caption 10's vector) finds caption 10
    images[[0, 1, 2]] = images[3]  # captions 1-3 now tie images 0-3 (at 0 or 1): image 0 comes first
    r = retrieval_recall(images, texts, ks=(1, 4))  # misses at rank 1: captions 1, 2, 3, 250; at 4: 250
    assert r["t2i@1"] == pytest.approx(296 / 300) and r["t2i@4"] == pytest.approx(299 / 300)


def test_top_indices_cut_ties_by_position_then_source():
    from semzip._topk import top_indices

    scores = np.array([[0.5, 0.9, 0.5, 0.5, 0.1]])
    assert sorted(top_indices(scores, 2)[0]) == [0, 1]
    assert sorted(top_indices(scores, 3)[0]) == [0, 1, 2]
    pos = np.array([[4, 0, 3, 2, 1]])
    assert sorted(top_indices(scores, 2, pos=pos)[0]) == [1, 3]  # of the tied 0, 2, 3: position 2 is earliest
    src = np.array([[1, 0, 1, 0, 0]])
    assert sorted(top_indices(scores, 2, pos=pos, src=src)[0]) == [1, 3]
    assert sorted(top_indices(scores, 3, pos=pos, src=src)[0]) == [1, 2, 3]  # then source 1, position 3 before 4
