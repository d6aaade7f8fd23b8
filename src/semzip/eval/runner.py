"""Rate against semantic fidelity: fit codecs, write real archives, measure what the decoded vectors keep.

Every rate comes from an archive written with `semzip.container.write_archive` and read back with
`Archive.info()`: payload bits/item (the coded items) and total bits/item (the whole file over its
items). Every fidelity figure is measured on the vectors decoded from that archive, next to the same
figure for the uncompressed vectors.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._errors import InputError, SemzipError, SpecError
from ..codecs import Codec, fit_codec
from ..container import DEFAULT_MODEL, Archive, write_archive
from ..spec import format_spec, parse_spec
from .datasets import EvalDataset
from .metrics import (cosine_to_reference, knn_overlap, nearest_centroid_topk, retrieval_recall, tag_overlap,
                      zero_shot_topk)

#: Neighbourhood size of the k-NN overlap metric.
KNN_K = 10
#: Retrieval cut-offs.
RECALL_KS = (1, 5, 10)

#: Metric key -> short column title, in display order.
METRIC_TITLES = {
    "cosine": "cos",
    "knn10": "kNN10",
    "tags5": "tags@5",
    "zs_top1": "zs@1",
    "zs_top5": "zs@5",
    "centroid_top1": "ncm@1",
    **{f"{way}@{k}": f"{way} R@{k}" for way in ("i2t", "t2i") for k in RECALL_KS},
}


def split_specs(text: str) -> list[str]:
    """'f16,pq:M=32,K=256,opq=1,sign' -> ['f16', 'pq:M=32,K=256,opq=1', 'sign'].

    A comma-separated token of the form key=value (up to a `+` that joins the next stage)
    continues the previous spec's parameters; any other token starts a new spec. Each spec is
    parsed, so a bad one is named.
    """
    specs: list[str] = []
    for token in (t.strip() for t in text.split(",")):
        if not token:
            raise SpecError(f"empty codec spec in {text!r}")
        first = token.split("+", 1)[0]
        if "=" in first and ":" not in first:
            if not specs:
                raise SpecError(f"{token!r} in {text!r} is a parameter without a codec name before it")
            specs[-1] += "," + token
        else:
            specs.append(token)
    return [format_spec(parse_spec(s)) for s in specs]


def task_metrics(ds: EvalDataset, X: np.ndarray) -> dict[str, float]:
    """Every metric `ds` supports, measured on `X` (the items, decoded or not)."""
    out = {"cosine": float(cosine_to_reference(X, ds.items).mean())}
    if len(ds.items) > KNN_K:
        out["knn10"] = knn_overlap(X, ds.items, k=KNN_K)
    if ds.text_features is not None and ds.labels is not None:
        out["zs_top1"] = zero_shot_topk(X, ds.text_features, ds.labels, k=1)
        out["zs_top5"] = zero_shot_topk(X, ds.text_features, ds.labels, k=5)
    if ds.centroid_features is not None:
        out["centroid_top1"] = nearest_centroid_topk(ds.centroid_features, ds.centroid_labels, X, ds.labels, k=1)
    if ds.captions is not None:
        out.update(retrieval_recall(X, ds.captions, ks=tuple(k for k in RECALL_KS if k < len(X))))
    if ds.tag_vocab is not None:
        out["tags5"] = tag_overlap(X, ds.items, ds.tag_vocab, k=5)
    return out


def reference_row(ds: EvalDataset) -> dict[str, Any]:
    """The uncompressed baseline: raw float32 (32 x dim bits, by definition) and its metrics."""
    d = ds.items.shape[1]
    row: dict[str, Any] = {"codec": "float32", "family": "float32", "payload_bits_per_item": 32.0 * d,
                           "bits_per_item": 32.0 * d, "metrics": task_metrics(ds, ds.items)}
    if ds.pixels is not None:
        row["payload_bpp"] = row["bpp"] = 32.0 * d * len(ds.items) / float(ds.pixels.sum())
    return row


def codec_row(ds: EvalDataset, codec: Codec, reference: dict[str, float], *, embed_codec: bool,
              workdir: Path) -> dict[str, Any]:
    """Write `ds.items` to an archive with a fitted codec; counted rates and metrics of the decoded items."""
    path = workdir / "eval.smz"
    start = time.perf_counter()
    write_archive(path, codec, ds.items, model=ds.model or DEFAULT_MODEL, embed_codec=embed_codec,
                  pixels=ds.pixels)
    encode_s = time.perf_counter() - start
    with Archive.open(path, codec=codec) as arc:
        info = arc.info()
        decoded = arc.decode()
    metrics = task_metrics(ds, decoded)
    row: dict[str, Any] = {
        "codec": format_spec(codec.spec),
        "family": codec.name,
        "payload_bits_per_item": info["payload_bits_per_item"],
        "bits_per_item": info["bits_per_item"],
        "fixed_bits_per_item": info["fixed_bits_per_item"],
        "codec_embedded": info["codec_embedded"],
        "codec_bits": info["codec_bits"],
        "archive_bytes": info["total_bits"] // 8,
        "encode_seconds": round(encode_s, 4),
        "metrics": metrics,
        "relative": {k: (v / reference[k] if reference.get(k) else None) for k, v in metrics.items()},
    }
    if "bpp" in info:
        row["bpp"], row["payload_bpp"] = info["bpp"], info["payload_bpp"]
    return row


def evaluate(ds: EvalDataset, specs: Sequence[str | Codec], *, train: np.ndarray | None = None,
             train_name: str | None = None, fit_on_items: bool = False, seed: int = 0,
             progress: Any = None) -> dict[str, Any]:
    """Rate-fidelity report of `ds` under each codec; JSON-ready.

    Codecs given as specs are fitted on `train` when given, else on the dataset's own training split
    (`ds.fit_features`), else (or with `fit_on_items`) on the items themselves. In the first two cases
    the codec is shared (written by hash, as a model sent once would be) and total bits exclude it; when
    fitted on the items it is embedded in the archive and counted. Fitted Codec objects are used as they
    are, shared. `progress(spec)` is called before each codec when given. A codec that cannot be fitted
    or used on this data (a semzip error) becomes a row with its `error`, and the others are still measured.
    """
    if fit_on_items and train is not None:
        raise InputError("fit on the items or on given training data, not both")
    if train is not None:
        fit_X, embed = train, False
        training = f"{train_name or 'given training data'} ({len(train)} vectors); codec shared, not in total bits"
    elif ds.fit_features is not None and not fit_on_items:
        fit_X, embed = ds.fit_features, False
        training = f"dataset's own {ds.fit_source}; codec shared, not in total bits"
    else:
        fit_X, embed = ds.items, True
        training = (f"the {len(ds.items)} evaluated items themselves; codec embedded in each archive "
                    f"and counted in total bits")
    if any(isinstance(s, Codec) for s in specs) and not all(isinstance(s, Codec) for s in specs):
        raise InputError("pass either specs or fitted codecs, not a mix")
    if specs and isinstance(specs[0], Codec):
        training, embed = "pre-fitted codecs; codec shared, not in total bits", False
    ref = reference_row(ds)
    rows = []
    with tempfile.TemporaryDirectory(prefix="semzip-eval-") as tmp:
        for spec in specs:
            if progress is not None:
                progress(spec if isinstance(spec, str) else format_spec(spec.spec))
            start = time.perf_counter()
            try:
                codec = spec if isinstance(spec, Codec) else fit_codec(spec, fit_X, seed=seed,
                                                                       progress=progress is not None)
                fit_s = time.perf_counter() - start
                row = codec_row(ds, codec, ref["metrics"], embed_codec=embed, workdir=Path(tmp))
            except SemzipError as exc:
                name = spec if isinstance(spec, str) else format_spec(spec.spec)
                rows.append({"codec": name, "family": parse_spec(name).name, "error": str(exc)})
                continue
            row["fit_seconds"] = round(fit_s, 4) if isinstance(spec, str) else None
            if isinstance(spec, str) and "seed" in codec.get_params():
                row["seed"] = seed
            rows.append(row)
    return {
        "dataset": ds.name,
        "items": len(ds.items),
        "dim": int(ds.items.shape[1]),
        "model": ds.model,
        "tasks": ds.tasks,
        "training": training,
        "pixels_known": ds.pixels is not None,
        "reference": ref,
        "rows": rows,
    }
