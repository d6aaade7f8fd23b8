"""Semantic fidelity metrics and rate-fidelity evaluation."""

from .metrics import cosine_to_reference, knn_overlap, nearest_centroid_topk, retrieval_recall, zero_shot_topk

__all__ = ["cosine_to_reference", "knn_overlap", "nearest_centroid_topk", "retrieval_recall", "zero_shot_topk"]
