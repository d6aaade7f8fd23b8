"""The README's demo: real CLIP embeddings of 500 COCO images and captions, compressed at several rates.

Codecs are fitted on 250 images (too few to learn an OPQ rotation in 512 dimensions) and used on the 250 others (a held-out split, so no codec has seen
the images it codes). Each codec writes a real shared-codec archive; the rates below are counted from
those files, and retrieval is measured between the decoded images and the uncompressed captions.
"""

from __future__ import annotations

import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from .codecs import make_codec
from .container import Archive, write_archive
from .eval import retrieval_recall

DEMO_MODEL = "ViT-B-16:openai"
DEMO_CODECS = (
    "f16",
    "int8",
    "sign",
    "pq:M=64,K=16,opq=0",
    "pq:M=32,K=16,opq=0",
    "pq:M=16,K=16,opq=0",
    "pq:M=8,K=16,opq=0",
)


def load_demo_data() -> tuple[np.ndarray, np.ndarray]:
    """(images, captions): float32 (500, 512) each, row i of one matching row i of the other."""
    with resources.as_file(resources.files("semzip") / "data" / "coco500_vit_b_16.npz") as path:
        with np.load(path) as data:
            return data["image_features"].astype(np.float32), data["text_features"].astype(np.float32)


def run_demo(codecs: tuple[str, ...] = DEMO_CODECS, seed: int = 0) -> list[dict[str, Any]]:
    """One row per codec (plus 'float32'): counted bits per image and retrieval recall on held-out pairs."""
    images, captions = load_demo_data()
    order = np.random.default_rng(seed).permutation(len(images))
    train, test = order[: len(order) // 2], order[len(order) // 2 :]
    rows = [_row("float32", 32.0 * images.shape[1], None, images[test], captions[test])]
    with tempfile.TemporaryDirectory() as tmp:
        for spec in codecs:
            codec = make_codec(spec).fit(images[train])
            path = Path(tmp) / "demo.smz"
            write_archive(path, codec, images[test], model=DEMO_MODEL, embed_codec=False)
            with Archive.open(path, codec=codec) as arc:
                info, decoded = arc.info(), arc.decode()
            rows.append(_row(str(codec.spec), info["payload_bits_per_item"], info, decoded, captions[test]))
    return rows


def _row(name: str, bits: float, info: dict | None, images: np.ndarray, captions: np.ndarray) -> dict[str, Any]:
    row: dict[str, Any] = {"codec": name, "bits_per_image": bits}
    if info is not None:
        row["fixed_bits_per_image"] = info["fixed_bits_per_item"]
        row["archive_bits_per_image"] = info["bits_per_item"]
    row.update(retrieval_recall(images, captions, ks=(1, 5)))
    return row


def print_table(rows: list[dict[str, Any]], console: Console) -> None:
    table = Table(title="semzip demo: 250 held-out COCO images, CLIP ViT-B/16 (captions uncompressed)")
    table.add_column("codec", no_wrap=True)
    table.add_column("bits/image\ncounted", justify="right", min_width=10)
    table.add_column("fixed\nbits", justify="right")
    for key in ("i2t@1", "i2t@5", "t2i@1", "t2i@5"):
        table.add_column(key.replace("@", " R@"), justify="right")
    for r in rows:
        fixed = r.get("fixed_bits_per_image")
        table.add_row(r["codec"], f"{r['bits_per_image']:.1f}", "-" if fixed is None else f"{fixed:.0f}",
                      *(f"{r[k]:.3f}" for k in ("i2t@1", "i2t@5", "t2i@1", "t2i@5")))
    console.print(table)
    console.print("Counted bits = coded payload bytes x 8 / images, read from each archive. The codec file "
                  "is shared (sent once), as a trained model would be; `semzip info` shows every bit.")
