"""Originals on disk, thumbnails and contact sheets: what the decoders show a person (Pillow)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from .._atomic import atomic_writer
from .._errors import InputError
from .._inputs import IMAGE_SUFFIXES

#: Longest side of a thumbnail, in pixels.
THUMB_PX = 256


def item_image(images: Path | None, item_id: str) -> Path | None:
    """The original of an item whose id is an image path under `images`: never a path outside it,
    never a file without an image suffix (ids come from archives, which come from elsewhere)."""
    if images is None:
        return None
    try:
        root = images.resolve()
        path = (root / item_id).resolve()
        found = path.is_relative_to(root) and path.is_file()
    except (OSError, ValueError):  # a NUL, a component too long for the file system
        return None
    return path if found and path.suffix.lower() in IMAGE_SUFFIXES else None


def thumbnail(path: str | Path, px: int = THUMB_PX) -> Any:
    """The image at `path` as an RGB Pillow image whose longest side is at most `px`, or None when it
    cannot be read (a broken file gets an empty cell, not an error, in a sheet)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.draft("RGB", (px, px))  # JPEG: decode at a reduced scale
            rgb = im.convert("RGB")
            rgb.thumbnail((px, px))
            return rgb
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError):
        return None


def thumbnail_jpeg(path: Path, px: int = THUMB_PX) -> bytes | None:
    """A JPEG thumbnail of `path`, cached per file version (path, size, mtime) for the web page."""
    try:
        st = path.stat()
    except OSError:
        return None
    return _jpeg(str(path), st.st_size, st.st_mtime_ns, px)


@lru_cache(maxsize=2048)
def _jpeg(path: str, size: int, mtime_ns: int, px: int) -> bytes | None:
    im = thumbnail(Path(path), px)
    if im is None:
        return None
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=85)
    return buf.getvalue()


def contact_sheet(rows: Sequence[tuple[str, Sequence[tuple[Any, str]]]], path: Path, px: int = 160) -> None:
    """A PNG grid: one row per entry (its label on the left), each cell an image (a Pillow image, a
    path, or None for an empty cell) with a caption under it. Written atomically."""
    from PIL import Image, ImageDraw

    if not rows:
        raise InputError("nothing to draw: the contact sheet has no rows")
    label_w, text_h, pad = 180, 28, 6
    cols = max(len(cells) for _, cells in rows)
    sheet = Image.new("RGB", (label_w + cols * (px + pad) + pad, len(rows) * (px + text_h + pad) + pad), "white")
    draw = ImageDraw.Draw(sheet)
    for r, (label, cells) in enumerate(rows):
        y = pad + r * (px + text_h + pad)
        draw.multiline_text((pad, y), _wrap(label, 26, 8), fill="black")
        for c, (image, caption) in enumerate(cells):
            x = label_w + pad + c * (px + pad)
            im = thumbnail(image, px) if isinstance(image, str | Path) else image
            if im is None:
                draw.rectangle((x, y, x + px - 1, y + px - 1), outline="#bbb")
            else:
                im = im.convert("RGB")
                im.thumbnail((px, px))
                sheet.paste(im, (x + (px - im.width) // 2, y + (px - im.height) // 2))
            draw.multiline_text((x, y + px + 2), _wrap(caption, px // 6, 2), fill="#333")
    buf = io.BytesIO()
    sheet.save(buf, "PNG")
    with atomic_writer(path) as fh:
        fh.write(buf.getvalue())


def _wrap(text: str, width: int, lines: int) -> str:
    """`text` cut into at most `lines` lines of `width` characters (the default bitmap font)."""
    parts = [text[i : i + width] for i in range(0, len(text), width)][:lines]
    return "\n".join(parts)
