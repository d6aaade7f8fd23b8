"""The README's demo: real CLIP ViT-B/16 embeddings of 500 COCO images and their captions, compressed
the two ways a user meets, every rate counted from an archive written for it.

1. *A collection in one file* (all 500 images, the codec inside the archive and counted): a
   collection codec (SMIC) whose dictionary the images pay for, `compress --bits` choosing for
   itself, and a per-item codec fitted on the collection, whose file costs more than its codes here.
2. *Per-item codes with a codec shared beforehand* (fitted on 250 images, used on the 250 others,
   the codec sent once and not counted per image): what a link that sends one image at a time pays.

Retrieval is measured between the decoded images and the uncompressed captions of the same images.
"""

from __future__ import annotations

import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from .choose import compress_to_budget
from .codecs import fit_codec
from .container import Archive, write_archive
from .eval import retrieval_recall

DEMO_MODEL = "ViT-B-16:openai"
#: (spec, why) of the codecs written with the collection, codec embedded and counted.
COLLECTION_CODECS = (
    ("smic:bits=128", "collection codec: its 1-bit dictionary is inside the file, paid by the 500 images"),
    ("smic:bits=256", "the same with twice the budget: a larger dictionary"),
    ("pq:M=64,K=16,opq=0", "per-item codec fitted on the collection: its centroids (in the file) cost more than "
                           "its 256-bit codes here"),
)
#: Budget of the `compress --bits` row.
CHOOSE_BITS = 1024
#: Per-item codecs fitted on half the images, shared (sent once), used on the other half.
SHARED_CODECS = ("int8", "sign", "pq:M=64,K=16,opq=0", "pq:M=32,K=16,opq=0")


def load_demo_data() -> tuple[np.ndarray, np.ndarray]:
    """(images, captions): float32 (500, 512) each, row i of one matching row i of the other."""
    with resources.as_file(resources.files("semzip") / "data" / "coco500_vit_b_16.npz") as path:
        with np.load(path) as data:
            return data["image_features"].astype(np.float32), data["text_features"].astype(np.float32)


def run_demo(seed: int = 0) -> dict[str, list[dict[str, Any]]]:
    """{"collection": rows, "shared": rows}: counted bits per image and retrieval recall, float32 first."""
    images, captions = load_demo_data()
    order = np.random.default_rng(seed).permutation(len(images))
    train, test = order[: len(order) // 2], order[len(order) // 2 :]
    out: dict[str, list[dict[str, Any]]] = {"collection": [_reference(images, captions)],
                                            "shared": [_reference(images[test], captions[test])]}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "demo.smz"
        for spec, why in COLLECTION_CODECS:
            codec = fit_codec(spec, images, seed=seed)
            write_archive(path, codec, images, model=DEMO_MODEL)
            atoms = f" ({codec.atoms_} atoms)" if hasattr(codec, "atoms_") else ""
            out["collection"].append(_measured(spec, why + atoms, path, captions, None))
        choice = compress_to_budget(images, CHOOSE_BITS, path, model=DEMO_MODEL, seed=seed)
        out["collection"].append(_measured(f"--bits {CHOOSE_BITS}: {choice.spec.split(':')[0]}",
                                           f"compress --bits {CHOOSE_BITS} chose {choice.spec}: the best mean cosine of "
                                           f"{len(choice.candidates)} candidates, each written and counted", path, captions,
                                           None))
        for spec in SHARED_CODECS:
            codec = fit_codec(spec, images[train], seed=seed)
            write_archive(path, codec, images[test], model=DEMO_MODEL, embed_codec=False)
            out["shared"].append(_measured(str(codec.spec), "", path, captions[test], codec))
    return out


def _reference(images: np.ndarray, captions: np.ndarray) -> dict[str, Any]:
    return {"codec": "float32", "why": "uncompressed", "bits_per_image": 32.0 * images.shape[1],
            **retrieval_recall(images, captions, ks=(1, 5))}


def _measured(name: str, why: str, path: Path, captions: np.ndarray, codec: Any) -> dict[str, Any]:
    with Archive.open(path, codec=codec) as arc:
        info, decoded = arc.info(), arc.decode()
    row = {"codec": name, "why": why, "bits_per_image": info["bits_per_item"],
           "payload_bits_per_image": info["payload_bits_per_item"], "codec_bits_per_image": info["codec_bits"] / info["items"]}
    return row | retrieval_recall(decoded, captions, ks=(1, 5))


def print_table(results: dict[str, list[dict[str, Any]]], console: Console) -> None:
    titles = {"collection": "1. The 500 COCO images as one collection in one archive: everything counted "
                            "(codec, ids, headers)",
              "shared": "2. One image at a time, codec shared beforehand (fitted on the other 250): payload counted"}
    for key, rows in results.items():
        table = Table(title=titles[key], title_justify="left")
        table.add_column("codec", no_wrap=True)
        table.add_column("bits", justify="right")
        if key == "collection":
            table.add_column("codec\nbits", justify="right")
        for col in ("i2t@1", "i2t@5", "t2i@1", "t2i@5"):
            table.add_column(col, justify="right")
        for i, r in enumerate(rows):
            bits = r["bits_per_image"] if key == "collection" else r.get("payload_bits_per_image", r["bits_per_image"])
            cells = [f"[{i}] {r['codec']}" if key == "collection" and i else r["codec"], f"{bits:.1f}"]
            if key == "collection":
                cells.append(f"{r['codec_bits_per_image']:.1f}" if "codec_bits_per_image" in r else "-")
            table.add_row(*cells, *(f"{r[k]:.3f}" for k in ("i2t@1", "i2t@5", "t2i@1", "t2i@5")))
        console.print(table)
        if key == "collection":
            for i, r in enumerate(rows[1:], 1):
                console.print(f"  [{i}] {r['why']}", highlight=False, markup=False)
    console.print("bits: per image, read from each archive written (`semzip info` shows every one); i2t/t2i: "
                  "image-to-caption and caption-to-image recall. A collection pays for its codec: with 500 images only "
                  "SMIC fits below ~550 bits per image. Per-item codecs here learn from 250 images only; trained on a "
                  "real pool they keep far more (README Results).", highlight=False)
