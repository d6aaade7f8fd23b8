"""Pixel codecs (JPEG, WebP, AVIF through Pillow) on the same images: counted bpp and, with a CLIP model,
the fidelity of the re-embedded decoded images, so "x% of the bitrate at equal accuracy" is measured.

Each image is converted to 8-bit RGB and encoded in memory with the settings written in
`PIXEL_CODECS` (nothing left to a library default that changes the bitstream); bpp = 8 x encoded
bytes / original pixels, summed over images. Re-embedding writes the encoded files to a temp folder
and hands them to the image embedder, which decodes them as it would any photo.
"""

from __future__ import annotations

import io
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._errors import InputError
from .._progress import progress_bar
from .datasets import EvalDataset, ImageEmbedder, embed_readable
from .runner import task_metrics


@dataclass(frozen=True)
class PixelCodec:
    """A Pillow encoder: format name, file suffix, fixed settings and the Pillow feature it needs."""

    pil_format: str
    suffix: str
    settings: dict[str, Any]
    feature: str


PIXEL_CODECS = {
    "jpeg": PixelCodec("JPEG", ".jpg", {"optimize": True, "subsampling": 2, "progressive": False}, "jpg"),
    "webp": PixelCodec("WEBP", ".webp", {"method": 6, "lossless": False}, "webp"),
    "avif": PixelCodec("AVIF", ".avif", {"speed": 6, "subsampling": "4:2:0", "max_threads": 1}, "avif"),
}
#: Qualities tried by default: the low end, where semantic codecs compete, up to typical web quality.
DEFAULT_QUALITIES = (1, 5, 10, 20, 30, 50, 75)


def check_pixel_codecs(names: Sequence[str]) -> list[str]:
    """The names, checked: known, and supported by the installed Pillow (AVIF needs Pillow >= 11.2 with libavif)."""
    from PIL import __version__ as pil_version
    from PIL import features

    out = []
    for name in names:
        name = name.strip().lower()
        if name not in PIXEL_CODECS:
            raise InputError(f"unknown pixel codec {name!r}; known: {', '.join(PIXEL_CODECS)}")
        if not features.check(PIXEL_CODECS[name].feature):
            raise InputError(f"Pillow {pil_version} here cannot write {name.upper()} "
                             f"(PIL.features.check({PIXEL_CODECS[name].feature!r}) is False)")
        out.append(name)
    if not out:
        raise InputError("no pixel codecs given")
    return out


def check_qualities(qualities: Sequence[int]) -> list[int]:
    qs = sorted({int(q) for q in qualities})
    if not qs or qs[0] < 0 or qs[-1] > 100:
        raise InputError(f"pixel-codec qualities must be integers in [0, 100], got {list(qualities)}")
    return qs


def encode_image(img: Any, codec: str, quality: int) -> bytes:
    """`img` (PIL image) encoded by pixel codec `codec` at `quality`, as the bytes a file would hold."""
    spec = PIXEL_CODECS[codec]
    buf = io.BytesIO()
    img.save(buf, spec.pil_format, quality=quality, **spec.settings)
    return buf.getvalue()


def _load_rgb(path: Path) -> Any:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except (OSError, UnidentifiedImageError) as exc:
        raise InputError(f"{path}: not a readable image ({exc})") from None


def pixel_codec_eval(paths: Sequence[Path], codecs: Sequence[str], qualities: Sequence[int] = DEFAULT_QUALITIES,
                     *, embedder: ImageEmbedder | None = None, dataset: EvalDataset | None = None,
                     progress: bool = False) -> list[dict[str, Any]]:
    """One row per (codec, quality): counted bytes and bpp over `paths`, plus, with `embedder` and the
    uncompressed `dataset` (items = embeddings of `paths`, in order), the metrics of the re-embedded
    decoded images. `progress` draws progress bars on stderr."""
    codecs = check_pixel_codecs(codecs)
    qualities = check_qualities(qualities)
    if embedder is not None and (dataset is None or len(dataset.items) != len(paths)):
        raise InputError("re-embedding pixel codecs needs the uncompressed dataset of the same images")
    if not paths:
        raise InputError("no images given")
    from PIL import __version__ as pil_version

    combos = [(codec, q) for codec in codecs for q in qualities]
    nbytes = dict.fromkeys(combos, 0)
    pixels = 0
    with tempfile.TemporaryDirectory(prefix="semzip-pixel-") as tmp:
        folders = {c: Path(tmp) / f"{c[0]}-{c[1]}" for c in combos}
        for folder in folders.values():
            folder.mkdir()
        with progress_bar("pixel-coding images", len(paths), enabled=progress) as advance:
            for i, path in enumerate(paths):  # one decoded image in memory at a time
                img = _load_rgb(Path(path))
                pixels += img.width * img.height
                for codec, q in combos:
                    data = encode_image(img, codec, q)
                    nbytes[codec, q] += len(data)
                    if embedder is not None:
                        (folders[codec, q] / f"{i:07d}{PIXEL_CODECS[codec].suffix}").write_bytes(data)
                advance(1)
        rows = []
        for codec, q in combos:
            row: dict[str, Any] = {
                "codec": f"{codec}:q={q}", "family": codec, "quality": q,
                "settings": {"pillow": pil_version, "quality": q, **PIXEL_CODECS[codec].settings},
                "images": len(paths), "pixels": pixels, "bytes": nbytes[codec, q],
                "bpp": 8.0 * nbytes[codec, q] / pixels, "payload_bits_per_item": 8.0 * nbytes[codec, q] / len(paths),
                "bits_per_item": 8.0 * nbytes[codec, q] / len(paths), "metrics": {},
            }
            if embedder is not None and dataset is not None:
                files = sorted(folders[codec, q].iterdir())
                features, kept = embed_readable(embedder, files, f"re-embedded {codec} q={q} images")
                if len(kept) != len(files):
                    raise InputError(f"{len(files) - len(kept)} {codec} q={q} images could not be read back")
                row["metrics"] = task_metrics(dataset, features)
            rows.append(row)
    return rows


def equal_fidelity_ratios(rows: Sequence[dict[str, Any]], pixel_rows: Sequence[dict[str, Any]],
                          metric: str) -> list[dict[str, Any]]:
    """For each semantic-codec row with a bpp, and each pixel codec family: the cheapest quality whose
    `metric` is at least the row's, and the ratio of the two counted bit rates (None when no quality reaches it)."""
    out = []
    for row in rows:
        if row.get("bpp") is None or metric not in row["metrics"]:
            continue
        for family in dict.fromkeys(p["family"] for p in pixel_rows):
            good = [p for p in pixel_rows if p["family"] == family and p["metrics"].get(metric, -1.0) >= row["metrics"][metric]]
            best = min(good, key=lambda p: p["bpp"]) if good else None
            lowest = min(p["quality"] for p in pixel_rows if p["family"] == family)
            out.append({
                "codec": row["codec"], "bpp": row["bpp"], metric: row["metrics"][metric], "pixel_codec": family,
                "pixel_quality": best["quality"] if best else None, "pixel_bpp": best["bpp"] if best else None,
                "bitrate_fraction": row["bpp"] / best["bpp"] if best else None,
                # reached already at the lowest quality tried: a lower one might too, so the fraction is a lower bound
                "at_lowest_quality": best is not None and best["quality"] == lowest,
            })
    return out
