"""Decoders to things a person looks at: nearest real images, captions, generated images (docs/DECODE.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from .._errors import InputError
from ..codecs import load_codec
from ..collection import open_archives
from . import app, chosen_ids, print_json, stdout, write_rows
from ._search import ArchivesArg, CodecOpt

IdOpt = Annotated[list[str] | None, typer.Option("--id", help="An item to decode; repeatable. Default: every item.")]
IdsFileOpt = Annotated[Path | None, typer.Option("--ids", help="Text file of item ids, one per line.")]


@app.command()
def nearest(
    archives: ArchivesArg,
    gallery: Annotated[list[Path], typer.Option("--gallery", help="Reference archive(s) of embedded images whose originals are on disk; repeatable.")],
    images: Annotated[Path | None, typer.Option("--images", help="Folder of the gallery's originals (its ids are paths under it).")] = None,
    item_images: Annotated[Path | None, typer.Option("--item-images", help="Folder of the items' own originals, shown first in the sheet when present.")] = None,
    k: Annotated[int, typer.Option("-k", help="Nearest gallery images per item.")] = 4,
    item: IdOpt = None,
    ids_file: IdsFileOpt = None,
    sheet: Annotated[Path | None, typer.Option("--sheet", help="Write a contact sheet PNG (first 24 items: original | nearest images).")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write every item's neighbours: CSV (id,rank,neighbour,score,image), or JSON if it ends in .json.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    codec: CodecOpt = None,
) -> None:
    """For each compressed item, the most similar real images of a reference gallery: what the code
    "looks like" without a generator. Scored on the gallery's codes with each item's decoded vector.

    Example: `semzip nearest photos.smz --gallery coco.smz --images coco/ --sheet nearest.png`. The
    gallery must be embedded with the archive's CLIP model. When the gallery is the archive itself,
    an item is not listed as its own neighbour.
    """
    from ..decode.nearest import nearest_images, nearest_sheet
    from ..search import Collection

    if images is not None and not images.is_dir():
        raise InputError(f"--images {str(images)!r} is not a folder")
    shared = load_codec(codec) if codec else None
    same = {p.resolve() for p in archives} == {p.resolve() for p in gallery}
    with open_archives(archives, codec=shared) as arcs, Collection(arcs) as coll, \
            open_archives(gallery, codec=shared) as garcs, Collection(garcs) as gcoll:
        rows = nearest_images(coll, gcoll, k, ids=chosen_ids(item, ids_file) or None, gallery_images=images, same=same)
    if output is not None:
        write_rows(output, rows, ["id", "rank", "neighbour", "score", "image"],
                   ((r["id"], rank, n["id"], n["score"], n["image"] or "")
                    for r in rows for rank, n in enumerate(r["nearest"], 1)))
    if sheet is not None:
        nearest_sheet(rows, sheet, item_images=item_images)
    if as_json:
        print_json(rows)
        return
    table = Table("id", f"nearest {k} (score)", title=f"{len(rows)} items", title_justify="left")
    for row in rows[:20]:
        table.add_row(row["id"], ", ".join(f"{n['id']} ({n['score']:.3f})" for n in row["nearest"]))
    stdout.print(table)
    if len(rows) > 20:
        stdout.print(f"... and {len(rows) - 20} more" + ("" if output else " (-o nearest.csv writes them all)"))
    missing = sum(n["image"] is None for row in rows for n in row["nearest"])
    if missing:
        stdout.print(f"{missing} neighbours have no original under --images"
                     + ("" if images else " (none given)"))
    for what, path in (("neighbours", output), ("contact sheet", sheet)):
        if path is not None:
            stdout.print(f"{what} -> {path}")
