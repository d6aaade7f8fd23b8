"""Decoders to things a person looks at: nearest real images, captions, generated images (docs/DECODE.md)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from .._atomic import atomic_writer
from .._errors import InputError
from .._inputs import read_all
from ..shards import open_archives
from ._app import CodecFileOpt, app, chosen_ids, codec_file, print_json, stdout, write_rows
from ._search import ArchivesArg

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
    codec: CodecFileOpt = None,
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
    shared = codec_file(codec)
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


TorchDeviceOpt = Annotated[str, typer.Option("--device", help="`cpu`, `cuda`, `cuda:N`, `mps`, or `auto` (a GPU when there is one).")]
Gpt2Opt = Annotated[str | None, typer.Option("--gpt2", help="GPT-2 by hub id (`gpt2`, downloaded once into the Hugging Face cache) or a local folder.")]


def _decoded(archives: list[Path], codec: Path | None, ids: list[str], *also: str | None) -> tuple:
    """(ids, decoded float32 vectors, model) of the chosen items (all when `ids` is empty), then the
    vector (1, d) of each id in `also` (None where it is None), from one opening of the archives."""
    from ..search import Collection

    with open_archives(archives, codec=codec_file(codec)) as arcs, Collection(arcs) as coll:
        names, X = coll.vectors(ids or None)
        return (names, X, coll.model, *(None if a is None else coll.vectors([a])[1] for a in also))


@app.command()
def caption(
    archives: ArchivesArg,
    captioner: Annotated[Path, typer.Option("--captioner", help="A folder from `semzip fit-captioner`, or a ClipCap checkpoint (coco_weights.pt).")],
    gpt2: Gpt2Opt = None,
    prefix_scale: Annotated[float | None, typer.Option("--prefix-scale", help="Multiply the unit vectors before the mapper: the norm of the embeddings a checkpoint was trained on (ClipCap's MLP weights: unnormalised CLIP). Default: the captioner's (1 for fit-captioner).")] = None,
    beam: Annotated[int, typer.Option("--beam", help="Beam width (1 = greedy).")] = 1,
    max_tokens: Annotated[int, typer.Option("--max-tokens", help="Longest caption, in GPT-2 tokens.")] = 40,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Items captioned at once.")] = 32,
    item: IdOpt = None,
    ids_file: IdsFileOpt = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the captions: CSV (id,caption), or JSON if it ends in .json.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    codec: CodecFileOpt = None,
    device: TorchDeviceOpt = "cpu",
) -> None:
    """Caption compressed items with a ClipCap-style captioner (decoded embedding -> GPT-2 prefix -> text).

    Example: `semzip caption photos.smz --captioner cap/ -o captions.csv`. A captioner is trained with
    `semzip fit-captioner`, or is ClipCap's published COCO checkpoint for ViT-B/32 with `--gpt2 gpt2`
    (docs/DECODE.md). Needs torch and transformers (`pip install 'semzip[decode]'`).
    """
    from ..decode.caption import Captioner
    from ..embed._load import resolve_device

    names, X, model = _decoded(archives, codec, chosen_ids(item, ids_file))
    cap = Captioner.load(captioner, gpt2=gpt2, prefix_scale=prefix_scale, device=resolve_device(device))
    if cap.config.get("model") and model != "unknown" and cap.config["model"] != model:
        raise InputError(f"the captioner was trained on {cap.config['model']} embeddings, the archive holds {model}")
    texts = cap.caption(X, beam=beam, max_tokens=max_tokens, batch_size=batch_size, progress=not as_json)
    rows = [{"id": i, "caption": t} for i, t in zip(names, texts)]
    if output is not None:
        write_rows(output, rows, ["id", "caption"], ((r["id"], r["caption"]) for r in rows))
    if as_json:
        print_json(rows)
        return
    table = Table("id", "caption", title=f"{len(rows)} items", title_justify="left")
    for row in rows[:20]:
        table.add_row(row["id"], row["caption"])
    stdout.print(table)
    if len(rows) > 20:
        stdout.print(f"... and {len(rows) - 20} more" + ("" if output else " (-o captions.csv writes them all)"))
    if output is not None:
        stdout.print(f"captions -> {output}")


@app.command("fit-captioner")
def fit_captioner(
    inputs: Annotated[list[str], typer.Argument(help="Embeddings (`x.npz`, `x.npz:key`, `x.npy`) or an archive (.smz: trained on its decoded vectors, so on what the codec keeps).")],
    captions: Annotated[Path, typer.Option("--captions", help="Captions: .txt (one per line, row order), .json (list, or {id: caption or [captions]}) or .csv (`caption` and optional `id` columns).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Captioner folder to write (replaced as a whole).")],
    gpt2: Annotated[str, typer.Option("--gpt2", help="GPT-2 to start from: hub id or local folder.")] = "gpt2",
    layout: Annotated[str, typer.Option("--layout", help="Mapper: `mlp` (ClipCap's, GPT-2 usually fine-tuned) or `transformer` (GPT-2 frozen).")] = "mlp",
    prefix_length: Annotated[int, typer.Option("--prefix-length", help="GPT-2 tokens the embedding becomes.")] = 10,
    clip_length: Annotated[int, typer.Option("--clip-length", help="Transformer mapper: tokens the embedding is first split into.")] = 10,
    layers: Annotated[int, typer.Option("--layers", help="Transformer mapper: layers.")] = 8,
    finetune_gpt2: Annotated[bool, typer.Option("--finetune-gpt2", help="Train GPT-2 too (ClipCap's MLP recipe); the folder then holds its weights.")] = False,
    epochs: Annotated[int, typer.Option("--epochs")] = 10,
    batch_size: Annotated[int, typer.Option("--batch-size")] = 32,
    lr: Annotated[float, typer.Option("--lr", help="AdamW learning rate (ClipCap: 2e-5), linear warm-up over the first tenth.")] = 2e-5,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    device: TorchDeviceOpt = "cpu",
    codec: CodecFileOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON: the training record.")] = False,
) -> None:
    """Train a ClipCap-style captioner on (embedding, caption) pairs, for `semzip caption`.

    Example: `semzip fit-captioner coco.npz --captions coco_captions.csv -o cap/ --finetune-gpt2 --epochs 10`.
    Rows of the inputs pair with captions by id (JSON object, CSV `id` column) or by order.
    """
    from ..decode.caption import fit_captioner as fit, read_captions
    from ..embed._load import resolve_device

    if any(s.endswith(".smz") for s in inputs):
        if len(inputs) != 1:
            raise InputError("give one archive, or embedding files (not both)")
        ids, X, model = _decoded([Path(inputs[0])], codec, [])
    else:
        emb = read_all(inputs)
        ids, X, model = emb.ids, emb.features, emb.model
    rows, texts = read_captions(captions, ids, len(X))
    cap = fit(X[rows], texts, gpt2=gpt2, layout=layout, prefix_length=prefix_length, clip_length=clip_length,
              num_layers=layers, finetune_gpt2=finetune_gpt2, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
              device=resolve_device(device), model=None if model in (None, "unknown") else model, progress=not as_json)
    cap.save(output)
    record = {"path": str(output), **{k: cap.config[k] for k in ("layout", "dim", "prefix_length", "model", "fit")}}
    if as_json:
        print_json(record)
        return
    losses = cap.config["fit"]["loss_per_epoch"]
    stdout.print(f"captioner ({layout}) trained on {len(texts)} pairs for {epochs} epochs, loss {losses[0]} -> "
                 f"{losses[-1]} -> {output}")


@app.command()
def generate(
    archives: ArchivesArg,
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for the images (NNNNN_ID.png) and index.json (id -> file, seed, settings).")],
    decoder: Annotated[str, typer.Option("--decoder", help="stable-unclip-small (ViT-L-14:openai embeddings), stable-unclip (ViT-H-14:laion2b_s32b_b79k), kandinsky-2.2 (ViT-bigG-14:laion2b_s39b_b160k).")],
    weights: Annotated[Path | None, typer.Option("--weights", help="Local pipeline folder (diffusers layout) instead of the decoder's hub repository.")] = None,
    item: IdOpt = None,
    ids_file: IdsFileOpt = None,
    steps: Annotated[int, typer.Option("--steps", help="Denoising steps.")] = 25,
    seed: Annotated[int, typer.Option("--seed", help="Item i of the selection is drawn with seed + i.")] = 0,
    guidance: Annotated[float | None, typer.Option("--guidance", help="Classifier-free guidance scale (default: unCLIP 10, Kandinsky 4).")] = None,
    size: Annotated[int | None, typer.Option("--size", help="Output side in pixels (default: the decoder's).")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Images generated at once.")] = 4,
    add: Annotated[str | None, typer.Option("--add", help="Semantic arithmetic: add this item's embedding (x + alpha * f(ID), renormalised; semzip.semantic).")] = None,
    subtract: Annotated[str | None, typer.Option("--subtract", help="Subtract this item's embedding (after --add: x - alpha * f(ID), renormalised).")] = None,
    alpha: Annotated[float, typer.Option("--alpha", help="Weight of --add / --subtract.")] = 1.0,
    scale: Annotated[float | None, typer.Option("--scale", help="Norm the unit vectors are given (default: unCLIP's from its normaliser statistics, Kandinsky 1).")] = None,
    images: Annotated[Path | None, typer.Option("--images", help="Folder of the originals, for the contact sheet.")] = None,
    sheet: Annotated[Path | None, typer.Option("--sheet", help="Write a contact sheet PNG: original (when under --images) | generated.")] = None,
    codec: CodecFileOpt = None,
    device: TorchDeviceOpt = "cpu",
    as_json: Annotated[bool, typer.Option("--json", help="Print index.json's content.")] = False,
) -> None:
    """Generate images from compressed items through a diffusers pipeline conditioned on CLIP image embeddings.

    Example: `semzip generate photos.smz -o gen/ --decoder stable-unclip-small --id cat.jpg --steps 25`,
    or semantic arithmetic as in SMIC: `--id dog.jpg --add beach.jpg --alpha 0.7`. The archive must hold
    embeddings of the decoder's CLIP model (a mismatch is refused). Weights come from the Hugging Face
    cache or are downloaded once; offline without them it fails at once saying how to get them.
    Needs torch and diffusers (`pip install 'semzip[decode]'`); a GPU (`--device cuda`) is much faster.
    """
    from ..decode._images import contact_sheet, item_image
    from ..decode.generate import check_model, decoder as find_decoder, load_generator, safe_names
    from ..semantic import semantic_add, semantic_subtract
    from ..embed._load import resolve_device

    spec = find_decoder(decoder)
    if output.exists() and not output.is_dir():
        raise InputError(f"--output {str(output)!r} exists and is not a folder")
    names, X, model, plus, minus = _decoded(archives, codec, chosen_ids(item, ids_file), add, subtract)
    check_model(spec, model)
    if plus is not None:
        X = semantic_add(X, plus, alpha)
    if minus is not None:
        X = semantic_subtract(X, minus, alpha)
    gen = load_generator(decoder, weights=str(weights) if weights else None, device=resolve_device(device), scale=scale)
    pictures = gen.generate(X, steps=steps, seed=seed, guidance=guidance, size=size, batch_size=batch_size,
                            progress=not as_json)
    output.mkdir(parents=True, exist_ok=True)
    files = safe_names(names)
    for picture, name in zip(pictures, files):
        buf = io.BytesIO()
        picture.save(buf, "PNG")
        with atomic_writer(output / name) as fh:
            fh.write(buf.getvalue())
    index = {"decoder": spec.name, "model": model, "steps": steps, "guidance": guidance, "scale": gen.scale,
             "add": add, "subtract": subtract, "alpha": alpha if add or subtract else None,
             "items": [{"id": i, "file": f, "seed": seed + n} for n, (i, f) in enumerate(zip(names, files))]}
    with atomic_writer(output / "index.json") as fh:
        fh.write(json.dumps(index, indent=2).encode())
    if sheet is not None:
        contact_sheet([(i, [(item_image(images, i), "original"), (p, spec.name)]) for i, p in
                       list(zip(names, pictures))[:24]], sheet)
    if as_json:
        print_json(index)
        return
    stdout.print(f"{len(pictures)} images ({spec.name}, {steps} steps) -> {output}/"
                 + (f", contact sheet -> {sheet}" if sheet else ""))
