"""Semantic fidelity metrics and rate-fidelity evaluation (docs/EVAL.md)."""

from .datasets import EvalDataset, image_folder_dataset, load_dataset
from .metrics import cosine_to_reference, knn_overlap, nearest_centroid_topk, retrieval_recall, zero_shot_topk
from .pixel import pixel_codec_eval
from .plot import plot_rate_fidelity
from .runner import evaluate, split_specs

__all__ = [
    "EvalDataset",
    "cosine_to_reference",
    "evaluate",
    "image_folder_dataset",
    "knn_overlap",
    "load_dataset",
    "nearest_centroid_topk",
    "pixel_codec_eval",
    "plot_rate_fidelity",
    "retrieval_recall",
    "split_specs",
    "zero_shot_topk",
]
