"""Semantic fidelity metrics on (possibly compressed) embeddings; all use cosine similarity.

Ranks are machine-independent: similarities are exact products (`_exact`: identical vectors score
identically wherever they sit in a batch, on any BLAS) and ties at a top-k cut go to the earlier
item (`_topk`), so a collection codec that gives many items the same vector is measured the same on
every machine.
"""

from __future__ import annotations

import numpy as np

from .._errors import InputError
from .._exact import ExactMatrix, exact_matmul
from .._topk import top_indices
from .._validate import check_embeddings, l2_normalize


def _unit(X: object, name: str, dim: int | None = None) -> np.ndarray:
    return l2_normalize(check_embeddings(X, dim=dim, name=name))


def _labels(y: object, n: int, name: str) -> np.ndarray:
    arr = np.asarray(y)
    if arr.shape != (n,) or not np.issubdtype(arr.dtype, np.integer):
        raise InputError(f"{name}: expected {n} integer labels, got shape {arr.shape} dtype {arr.dtype}")
    return arr


def _topk_hits(scores: np.ndarray, truth: np.ndarray, k: int) -> float:
    top = top_indices(scores, min(k, scores.shape[1]))
    return float((top == truth[:, None]).any(axis=1).mean())


def zero_shot_topk(images: object, texts: object, labels: object, k: int = 1) -> float:
    """Fraction of images whose true class is among the k classes with the most similar text embedding."""
    img = _unit(images, "image embeddings")
    txt = _unit(texts, "text embeddings", dim=img.shape[1])
    y = _labels(labels, len(img), "labels")
    if y.min() < 0 or y.max() >= len(txt):
        raise InputError(f"labels must index the {len(txt)} text embeddings")
    return _topk_hits(exact_matmul(img, txt.T), y, k)


def nearest_centroid_topk(train: object, train_labels: object, test: object, test_labels: object,
                          k: int = 1) -> float:
    """Top-k accuracy of classifying `test` by cosine to per-class centroids of `train`."""
    tr = _unit(train, "training embeddings")
    te = _unit(test, "test embeddings", dim=tr.shape[1])
    ytr = _labels(train_labels, len(tr), "training labels")
    yte = _labels(test_labels, len(te), "test labels")
    classes, inv = np.unique(ytr, return_inverse=True)
    centroids = np.zeros((len(classes), tr.shape[1]), dtype=np.float64)
    np.add.at(centroids, inv, tr)
    lookup = {c: i for i, c in enumerate(classes.tolist())}
    if not set(np.unique(yte).tolist()) <= set(lookup):
        raise InputError("test labels include classes absent from the training labels")
    truth = np.array([lookup[c] for c in yte.tolist()])
    return _topk_hits(exact_matmul(te, l2_normalize(centroids).astype(np.float32).T), truth, k)


def retrieval_recall(images: object, texts: object, ks: tuple[int, ...] = (1, 5, 10)) -> dict[str, float]:
    """Recall@k both ways for paired rows (image i matches text i): keys 'i2t@k' and 't2i@k'."""
    img = _unit(images, "image embeddings")
    txt = _unit(texts, "text embeddings", dim=img.shape[1])
    if len(img) != len(txt):
        raise InputError(f"retrieval needs paired rows: {len(img)} images vs {len(txt)} texts")
    sims = exact_matmul(img, txt.T)
    truth = np.arange(len(img))
    out = {}
    for k in ks:
        out[f"i2t@{k}"] = _topk_hits(sims, truth, k)
        out[f"t2i@{k}"] = _topk_hits(sims.T, truth, k)
    return out


def knn_overlap(decoded: object, reference: object, k: int = 10, block: int = 1024) -> float:
    """Mean fraction of each item's k nearest neighbours (cosine, itself excluded) among the decoded
    vectors that are also among its k nearest neighbours among the originals; 1.0 = same neighbourhoods."""
    ref = _unit(reference, "reference embeddings")
    dec = _unit(decoded, "decoded embeddings", dim=ref.shape[1])
    n = len(ref)
    if len(dec) != n:
        raise InputError(f"{len(dec)} decoded vs {n} reference vectors")
    if not 1 <= k < n:
        raise InputError(f"k-NN overlap needs 1 <= k < items; got k={k} for {n} items")
    total = 0
    ref_all, dec_all = ExactMatrix(ref.T), ExactMatrix(dec.T)
    for start in range(0, n, block):
        rows = np.arange(start, min(start + block, n))
        near_ref = _neighbours(ref_all.left_product(ref[rows]), rows, k)
        near_dec = _neighbours(dec_all.left_product(dec[rows]), rows, k)
        total += sum(len(np.intersect1d(a, b, assume_unique=True)) for a, b in zip(near_ref, near_dec))
    return total / (n * k)


def tag_overlap(decoded: object, reference: object, vocab: object, k: int = 5, block: int = 1024) -> float:
    """Mean fraction of each item's k tags (its k nearest vocabulary text embeddings, cosine) from the
    decoded vector that are also its k tags from the original: what a person reading tags would see."""
    ref = _unit(reference, "reference embeddings")
    dec = _unit(decoded, "decoded embeddings", dim=ref.shape[1])
    words = _unit(vocab, "tag vocabulary", dim=ref.shape[1])
    if len(dec) != len(ref):
        raise InputError(f"{len(dec)} decoded vs {len(ref)} reference vectors")
    if not 1 <= k <= len(words):
        raise InputError(f"tag overlap needs 1 <= k <= vocabulary size; got k={k} for {len(words)} words")
    total = 0
    vocab_t = ExactMatrix(words.T)
    for start in range(0, len(ref), block):
        a = top_indices(vocab_t.left_product(ref[start : start + block]), k)
        b = top_indices(vocab_t.left_product(dec[start : start + block]), k)
        total += sum(len(np.intersect1d(x, y, assume_unique=True)) for x, y in zip(a, b))
    return total / (len(ref) * k)


def _neighbours(sims: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    sims[np.arange(len(rows)), rows] = -np.inf  # an item is not its own neighbour
    return top_indices(sims, k)


def cosine_to_reference(decoded: object, reference: object) -> np.ndarray:
    """Per-item cosine similarity between decoded vectors and the originals."""
    ref = _unit(reference, "reference embeddings")
    dec = _unit(decoded, "decoded embeddings", dim=ref.shape[1])
    if len(dec) != len(ref):
        raise InputError(f"{len(dec)} decoded vs {len(ref)} reference vectors")
    return (dec * ref).sum(axis=1)
