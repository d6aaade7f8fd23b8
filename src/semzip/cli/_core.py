"""Core commands: fit, compress, append, delete, truncate, refine, patch, decompress, info, verify, codecs, demo."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.table import Table

from .._atomic import atomic_writer
from .._errors import InputError
from .._inputs import item_ids, read_all, recorded_model, split_source
from ..spec import format_spec, parse_spec
from ..codecs import Codec, available_codecs, codec_class, fit_codec, load_codec, make_codec, resolve_codec, save_codec
from ..shards import ShardedArchive, is_manifest, open_collection
from ..container import DEFAULT_BLOCK_ITEMS, DEFAULT_MODEL, UNKNOWN_MODEL, Archive, append_archive, write_archive
from ._app import (CodecFileOpt, JsonFlag, JsonOutOpt, app, chosen_ids, codec_file, option_rules, print_json, stderr, stdout,
                   write_rows)
from . import _embed, _scale

OutOpt = Annotated[Path, typer.Option("--output", "-o", help="File to write (replaced atomically).")]


@app.command()
def fit(
    spec: Annotated[str, typer.Argument(help="Codec spec, e.g. `pq:M=32,K=256`, or stages joined by `+`: "
                                             "`coarse:bits=8+rq:M=6,K=256` (see `semzip codecs`).")],
    train: Annotated[list[str], typer.Argument(help="Training embeddings: `x.npy`, `x.npz:key`; several are concatenated.")],
    output: OutOpt,
    seed: Annotated[int, typer.Option(help="Seed for trainable codecs.")] = 0,
    threads: Annotated[int, typer.Option("--threads", help="BLAS/faiss/torch threads for training. A seed gives the same codec for a given thread count, not across counts.")] = 1,
    as_json: JsonFlag = False,
) -> None:
    """Train a codec on embeddings and save it as a `.smzc` file (JSON config + arrays + content hash).

    Example: `semzip fit pq:M=32,K=256 imagenet.npz:shots4_features -o pq256.smzc`
    """
    codec = make_codec(spec)
    X = read_all(train).features
    fit_codec(codec, X, seed=seed, threads=threads, progress=not as_json)
    save_codec(codec, output)
    if as_json:
        print_json({"spec": format_spec(codec.spec), "hash": codec.state_hash, "items": len(X), "dim": int(X.shape[1]),
                    "path": str(output), "bytes": output.stat().st_size, "fit_info": codec.fit_info()})
        return
    stdout.print(f"fitted {codec.spec} on {len(X)} vectors of width {X.shape[1]} -> {output} "
                 f"(hash {codec.state_hash[:12]}, {output.stat().st_size} bytes)", highlight=False)


IdsOpt = Annotated[str | None, typer.Option("--ids", help="Text file of item ids, one per line, in input order (instead of the ids stored in the input).", rich_help_panel="Items")]
IdPrefixOpt = Annotated[str | None, typer.Option("--id-prefix", help="Name the items P0, P1, ... (so archives of plain arrays can be merged).", rich_help_panel="Items")]


@app.command()
@option_rules(excludes=(("ray", "bits"), ("ray", "ids_file"), ("ray", "id_prefix")), needs=(("ray", "codec"),))
def compress(
    inputs: Annotated[list[str], typer.Argument(help="Embeddings (`x.npy`, `x.npz:key`; several are concatenated in order), or image files and folders to embed first.")],
    output: OutOpt,
    codec: Annotated[str | None, typer.Option("--codec", help="A fitted codec file (.smzc), or a spec to fit on INPUT itself.", rich_help_panel="Codec")] = None,
    bits: Annotated[float | None, typer.Option("--bits", help="Alone: a budget in bits per item with everything counted (codec, ids, headers); the codec family and size of best fidelity on INPUT within it is chosen, and the choice explained. With --codec: a payload budget (coded items, block overhead included) that the archive keeps on any input, or is refused; a progressive codec (rq) spends it where it helps most.", rich_help_panel="Codec")] = None,
    shared: Annotated[bool, typer.Option("--shared", help="Name the codec by hash instead of embedding it; decoding then needs the .smzc file.", rich_help_panel="Codec")] = False,
    model: Annotated[str | None, typer.Option(help=f"Embedding model id stored in the archive (open_clip ARCH:TAG; default: the one recorded by `semzip embed`, else {UNKNOWN_MODEL!r}); for an image folder, the model that embeds it (default {DEFAULT_MODEL}).", rich_help_panel="Items")] = None,
    ids_file: IdsOpt = None,
    id_prefix: IdPrefixOpt = None,
    block_items: Annotated[int, typer.Option(help="Items per entropy-coded block (random access decodes one block).", rich_help_panel="Items")] = DEFAULT_BLOCK_ITEMS,
    weights: _embed.WeightsOpt = None,
    device: _embed.DeviceOpt = "cpu",
    batch_size: _embed.BatchOpt = 64,
    no_cache: _embed.NoCacheOpt = False,
    strict: _embed.StrictOpt = False,
    ray: _scale.RayOpt = False,
    workers: _scale.RayWorkersOpt = 2,
    shard_items: _scale.ShardItemsOpt = 10_000,
    fit_items: _scale.FitItemsOpt = 100_000,
    address: _scale.AddressOpt = None,
    as_json: JsonFlag = False,
) -> None:
    """Compress embeddings, or a folder of images, into a `.smz` archive.

    With a codec file the archive embeds it (its bits are counted in the total) unless `--shared`.
    With a spec the codec is fitted on INPUT itself and embedded: the collection pays for its codec.
    An image folder is embedded with `--model` first (ids are paths relative to it, pixel counts are
    kept so `semzip info` reports bits per pixel). Example: `semzip compress photos/ --codec pq.smzc -o p.smz`

    With only a budget, `semzip compress photos.npz --bits 32 -o p.smz` fits each codec family and size
    that may fit on the collection, writes a real archive with each, and keeps the best mean cosine to
    the originals among those whose counted bits per item are within the budget.

    With a codec and a budget, `semzip compress photos.npz --codec rq.smzc --bits 64 -o p.smz` keeps
    the payload at most 64 bits per item on any input: the progressive `rq` codec gives each item the
    residual stages worth their bits; other codecs are measured and refused when over the budget.

    With `--ray`, INPUT may also be an object-store prefix (`s3://bucket/photos/`) and OUTPUT is a folder
    of shard archives plus `manifest.json`; re-running the same command resumes an interrupted run.
    """
    if codec is None and bits is None:
        raise InputError("give --codec (a codec file or spec), --bits (a budget in bits per item), or both")
    images = _are_images(inputs)
    clip = _embed.ClipOptions(model or DEFAULT_MODEL, weights, device, batch_size)
    if ray:
        if codec is None or len(inputs) > 1:
            raise InputError("--ray takes one INPUT and --codec")
        _scale.compress_ray(inputs[0], codec, output, clip, model is not None,
                            _scale.RayOptions(workers, shard_items, fit_items, address))
        return
    _refuse_overwriting_inputs(inputs, output)
    ids: list[str] | None
    pixels: np.ndarray | None
    if images:
        found = _embed.embed_images(inputs, clip, no_cache=no_cache, strict=strict)
        X, ids, pixels, model = found.features, found.ids, found.pixels, found.model_id
    else:
        X, ids, recorded, pixels = read_all(inputs)
        model = recorded_model(model, recorded, ", ".join(inputs)) or UNKNOWN_MODEL
    names = item_ids(len(X), ids_file, id_prefix, ids)
    if codec is None:
        assert bits is not None  # one of the two is required (checked first)
        _compress_to_budget(X, float(bits), output, ids=names, model=model, pixels=pixels, block_items=block_items,
                            shared=shared, as_json=as_json)
        return
    fitted = _resolve_codec(codec, X, shared, progress=not as_json)
    write_archive(output, fitted, X, ids=names, model=model, embed_codec=not shared, pixels=pixels,
                  block_items=block_items, progress=not as_json, budget_bits=bits)
    _summary(output, as_json)


def _are_images(inputs: list[str]) -> bool:
    """True when INPUT names image files and/or folders (embedded first), False for embedding files."""
    from .._inputs import IMAGE_SUFFIXES, is_embedding_folder

    kinds = {(Path(i).is_dir() and not is_embedding_folder(split_source(i)[0])) or Path(i).suffix.lower() in IMAGE_SUFFIXES
             for i in inputs}
    if len(kinds) > 1:
        raise InputError("give either embedding files (.npy/.npz) or images and image folders, not both")
    return kinds.pop()


def _refuse_overwriting_inputs(inputs: list[str], output: Path) -> None:
    """Writing over an input would destroy it before (or while) it is read."""
    for arg in inputs:
        path = split_source(arg)[0]
        if path.exists() and output.exists() and path.resolve() == output.resolve():
            raise InputError(f"output {str(output)!r} is also an input: write to another file")


def _resolve_codec(codec: str, X: np.ndarray, shared: bool, progress: bool) -> Codec:
    resolved = resolve_codec(codec)
    if resolved.is_fitted:
        return resolved
    if shared:
        raise InputError("--shared needs a codec file: a codec fitted here would exist nowhere else")
    return fit_codec(resolved, X, progress=progress)


def _compress_to_budget(X: np.ndarray, bits: float, output: Path, *, shared: bool, as_json: bool,
                        **archive: Any) -> None:
    from .._progress import status
    from ..choose import compress_to_budget

    if shared:
        raise InputError("--shared needs a codec file: with --bits the chosen codec is embedded and counted")
    with status("trying codecs", enabled=not as_json) as update:
        choice = compress_to_budget(X, bits, output, progress=lambda s: update(f"trying {s}"), **archive)
    if as_json:
        with Archive.open(output) as arc:
            print_json(arc.info() | {"chosen": choice.spec, "why": choice.reason, "candidates": choice.candidates})
        return
    table = Table("candidate", "bits/item (counted)", "mean cosine", "", title=f"codecs tried at {bits:g} bits per item",
                  title_justify="left")
    for c in choice.candidates:
        note = c.get("error", "") if "error" in c else ("chosen" if c["spec"] == choice.spec else
                                                          "" if c["within"] else "over budget")
        table.add_row(c["spec"], f"{c['bits_per_item']:.1f}" if "bits_per_item" in c else "-",
                      f"{c['cosine']:.4f}" if "cosine" in c else "-", note[:90])
    stdout.print(table)
    stdout.print(f"chose {choice.reason}", highlight=False)
    _summary(output)


def _summary(path: Path, as_json: bool = False, ivf: dict[str, Any] | None = None) -> None:
    """The archive's rates (its `info`); with `ivf`, what an append did to its index (`index_follows`)."""
    with Archive.open(path) as arc:
        info = arc.info()
    if as_json:
        print_json(info if ivf is None else {**info, "ivf": ivf or None})
        return
    fixed = f" (fixed-length {info['fixed_bits_per_item']:.0f})" if "fixed_bits_per_item" in info else ""
    stdout.print(f"{info['items']} items -> {path}: {info['payload_bits_per_item']:.1f} payload bits/item{fixed}, "
                 f"{info['bits_per_item']:.1f} bits/item in all ({info['total_bits'] // 8} bytes)")
    share = info["codec_bits"] / info["items"]
    collection = codec_class(parse_spec(info["codec"]).name).collection
    if info["codec_embedded"] and share > info["payload_bits_per_item"] and not collection:
        stdout.print(f"the embedded codec is {share:.1f} of those bits per item: share it instead (--shared, and "
                     "decode with the .smzc), use a collection codec (--codec smic:bits=B), or give only a budget "
                     "(--bits B, no --codec): semzip then chooses a codec whose whole archive, codec "
                     "included, fits it", highlight=False)
    _say_index(ivf)


@app.command()
def append(
    archive: Annotated[Path, typer.Argument(help="Existing archive to extend (replaced atomically).")],
    inputs: Annotated[list[str], typer.Argument(help="Embeddings to add (`x.npy`, `x.npz:key`; several are concatenated in order).")],
    codec: CodecFileOpt = None,
    ids_file: IdsOpt = None,
    id_prefix: IdPrefixOpt = None,
    as_json: JsonFlag = False,
) -> None:
    """Add items to an archive, coded with the archive's own codec; existing items are untouched.

    An index beside it (ARCHIVE.ivf, `semzip index`) is kept current: the new items join their
    nearest lists, so `search --nprobe` needs no rebuild."""
    from ..search._ivf import index_follows

    _refuse_overwriting_inputs(inputs, archive)
    X, ids, _, pixels = read_all(inputs)
    ids = item_ids(len(X), ids_file, id_prefix, ids)
    given = codec_file(codec)
    with index_follows(archive, codec=given) as ivf:
        append_archive(archive, X, ids=ids, pixels=pixels, codec=given, progress=not as_json)
    _summary(archive, as_json, ivf)


def _say_index(ivf: dict[str, Any] | None) -> None:
    """One line on what a change did to the archive's index, when it has one."""
    if not ivf:
        return
    if ivf["status"] == "updated":
        later = ivf["since_build"]["appended"]
        drift = (f"; {later} of its {ivf['items']} items came after its lists were made: `semzip index` makes lists "
                 "that fit them (carried-over lists grow uneven, and searches slower)") if 2 * later > ivf["items"] else ""
        stdout.print(f"{ivf['path']} kept current (+{ivf['appended']} -{ivf['deleted']} items in its lists){drift}",
                     highlight=False)
    else:
        stderr.print(f"warning: {ivf['path']} was not updated ({ivf['why']}); `search --nprobe` refuses it until "
                     "`semzip index` rebuilds it", highlight=False)


@app.command()
def delete(
    archive: Annotated[Path, typer.Argument(help="Archive to delete items from (replaced atomically), or a sharded collection (folder or manifest.json: tombstones).")],
    ids: Annotated[list[str] | None, typer.Argument(help="Ids of the items to delete.", show_default=False)] = None,
    ids_file: Annotated[Path | None, typer.Option("--ids", help="Text file of ids to delete, one per line.")] = None,
    codec: CodecFileOpt = None,
    as_json: JsonFlag = False,
) -> None:
    """Delete items by id. Other items keep their exact codes (blocks without a deleted item are
    copied, the others re-packed), so they decode as before; the bits of deleted items are freed.

    Unknown ids are refused and nothing changes. Example: `semzip delete photos.smz img7.jpg img9.jpg`
    or `semzip delete photos.smz --ids gone.txt`.
    An index beside the archive (ARCHIVE.ivf) is kept current: the deleted items leave its lists.
    A sharded collection (`semzip delete big/ --ids gone.txt`) records tombstones in its manifest
    instead (no shard is rewritten; every reader skips them); `semzip compact big/` purges them.
    """
    from ..container import delete_items
    from ..search._ivf import index_follows
    from ..shards import delete_from_collection

    wanted = chosen_ids(ids, ids_file)
    if not wanted:
        raise InputError("name the items to delete: ids as arguments, or --ids FILE")
    given = codec_file(codec)
    if is_manifest(archive):
        done = delete_from_collection(archive, wanted, codec=given)
        if as_json:
            print_json({"path": str(archive), **done})
            return
        stdout.print(f"deleted {done['deleted']} items from {archive} ({done['shards_touched']} shard(s)): "
                     f"{done['items']} remain; {done['tombstones']} deleted items still take their bytes "
                     f"until `semzip compact {archive}`", highlight=False)
        return
    with index_follows(archive, codec=given) as ivf:
        result = delete_items(archive, wanted, codec=given)
    if as_json:
        print_json({"path": str(archive), **result, "ivf": ivf or None})
        return
    stdout.print(f"deleted {result['deleted']} items from {archive}: {result['items']} remain, "
                 f"{result['bytes_before']} -> {result['bytes_after']} bytes"
                 + (" (the default ids 0..n-1 now have gaps, so they are stored)" if result["ids_now_stored"] else ""))
    _say_index(ivf)


@app.command()
def truncate(
    archive: Annotated[Path, typer.Argument(help="Archive written with a progressive codec (rq).")],
    output: OutOpt,
    bits: Annotated[float, typer.Option("--bits", help="Payload budget in bits per item (coded items, block overhead included).")],
    codec: CodecFileOpt = None,
    as_json: JsonFlag = False,
) -> None:
    """Cut an rq archive to a lower rate without the originals: each item keeps the prefix of its
    residual stages worth its bits. Send the cut over a thin link first, a larger cut later.

    Example: `semzip compress x.npz --codec rq.smzc --bits 256 -o full.smz`, then
    `semzip truncate full.smz --bits 32 -o first.smz`.
    """
    from ..container import truncate_archive

    truncate_archive(archive, output, bits, codec=codec_file(codec))
    _summary(output, as_json)


@app.command()
def refine(
    archive: Annotated[Path, typer.Argument(help="The full rq archive the sender keeps.")],
    have: Annotated[Path, typer.Option("--have", help="The cut the receiver holds (as `truncate` or an earlier patch left it).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Refinement file to write (.smzr), replaced atomically.")],
    bits: Annotated[float, typer.Option("--bits", help="Payload budget of the refined archive, in bits per item (as `truncate` counts it).")],
    codec: CodecFileOpt = None,
    as_json: JsonFlag = False,
) -> None:
    """Send the rest later: write the stages a receiver's cut lacks to reach a higher budget. The
    receiver applies it with `semzip patch`; what it then holds equals a cut of the full archive.

    Example: `semzip truncate full.smz --bits 32 -o first.smz` (sent now), then
    `semzip refine full.smz --have first.smz --bits 128 -o more.smzr` (sent later). The sender keeps
    its copy of what the receiver holds (patching it too), so the next refinement can name it.
    """
    from ..refine import refine_archive

    result = refine_archive(archive, have, output, bits, codec=codec_file(codec))
    if as_json:
        print_json({"path": str(output), **result})
        return
    stdout.print(f"{output}: {result['refinement_bytes']} bytes ({result['refinement_bits_per_item']:.2f} bits per item "
                 f"on the link) grow {result['items']} items from {result['payload_bits_per_item_before']:.2f} to "
                 f"{result['payload_bits_per_item_after']:.2f} payload bits each", highlight=False)


@app.command()
def patch(
    archive: Annotated[Path, typer.Argument(help="The receiver's cut of an rq archive.")],
    refinement: Annotated[Path, typer.Argument(help="Refinement made for exactly this archive by `semzip refine`.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Archive to write; may be ARCHIVE itself (replaced atomically).")],
    codec: CodecFileOpt = None,
    as_json: JsonFlag = False,
) -> None:
    """Grow a cut archive by a refinement. Refused, with nothing written, when the refinement was made
    for another archive or is damaged.

    Example: `semzip patch first.smz more.smzr -o first.smz`
    """
    from ..refine import patch_archive

    patch_archive(archive, refinement, output, codec=codec_file(codec))
    _summary(output, as_json)


@app.command()
def decompress(
    archive: Annotated[Path, typer.Argument(help="Archive to decode, or a sharded collection (folder or manifest.json).")],
    output: OutOpt,
    codec: CodecFileOpt = None,
) -> None:
    """Decode every item, in archive (shard) order: to a float32 (N, D) `.npy`, or to an `.npz` with
    `features`, `ids`, `model` (and `pixels` when known), which `compress` and `fit` read back."""
    if output.exists() and output.resolve() == archive.resolve():
        raise InputError(f"output {str(output)!r} is the archive itself: write to another file")
    with open_collection(archive, codec=codec_file(codec)) as arc:
        X = arc.decode(progress=True)
        beside: dict[str, Any] = {"ids": np.array(arc.ids), "model": np.array(arc.model)}
        if arc.pixels is not None:
            beside["pixels"] = arc.pixels
    with atomic_writer(output) as fh:
        if output.suffix == ".npz":
            np.savez(fh, features=X, **beside)
        else:
            np.save(fh, X)
    stdout.print(f"{len(X)} x {X.shape[1]} float32 -> {output}" + (" (with ids and model)" if output.suffix == ".npz" else ""))


@app.command()
def ls(
    archive: Annotated[Path, typer.Argument(help="Archive, or a sharded collection (folder or manifest.json).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list of ids.")] = False,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the ids to a file instead: .parquet or .csv (an `id` column), .json, else text.")] = None,
) -> None:
    """List the ids of an archive's items, one per line, in archive (shard) order."""
    with open_collection(archive, partial=True) as arc:
        ids = arc.ids
    if output is not None:
        if output.suffix in (".parquet", ".csv", ".json"):
            write_rows(output, ids, ["id"], ((i,) for i in ids))
        else:
            with atomic_writer(output) as fh:
                fh.write("".join(f"{i}\n" for i in ids).encode())
        stdout.print(f"{len(ids)} ids -> {output}")
        return
    if as_json:
        typer.echo(json.dumps(ids))
    else:
        typer.echo("\n".join(ids))


@app.command()
def info(
    archive: Annotated[Path, typer.Argument(help="Archive to describe, or a sharded collection (folder or manifest.json).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for machines.")] = False,
    codec: CodecFileOpt = None,
) -> None:
    """Describe an archive (items, model, codec and every bit counted from the file), or a `.smzc` codec file.

    `total_bits` is 8 x the file size; `bits_per_item` = total_bits / items; `payload_bits` counts
    the coded items alone; `codec_bits` is the embedded codec (0 when shared).
    """
    if archive.is_file() and archive.suffix == ".smzc":
        data = _codec_info(archive)
    else:
        with open_collection(archive, codec=codec_file(codec), partial=True) as arc:
            data = arc.info()
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    table = Table(show_header=False, box=None)
    for key, value in data.items():
        table.add_row(key, f"{value:.4g}" if isinstance(value, float) else str(value))
    stdout.print(table)


@app.command()
def verify(
    archive: Annotated[Path, typer.Argument(help="Archive to check, or a sharded collection (also checks each shard's SHA-256).")],
    codec: CodecFileOpt = None,
    as_json: JsonFlag = False,
) -> None:
    """Check every checksum (sections and blocks) and that every block decodes. Exit 3 on damage."""
    from .._errors import FormatError

    try:
        problems, items, blocks, decodable = _check(archive, codec_file(codec))
    except FormatError as exc:  # damage found on open: a section checksum, the header, the magic
        if not as_json:
            raise
        problems, items, blocks, decodable = [str(exc)], None, None, False
    if as_json:
        print_json({"path": str(archive), "ok": not problems, "problems": problems, "items": items, "blocks": blocks,
                    "decoded": decodable})
    if problems:
        raise FormatError(f"{archive}: {len(problems)} problem(s): " + "; ".join(problems))
    if as_json:
        return
    note = "" if decodable else " (checksums only: pass --codec to also check that blocks decode)"
    stdout.print(f"ok: {archive}: {items} items in {blocks} blocks, all checksums match{note}")


def _codec_info(path: Path) -> dict[str, Any]:
    """What a `.smzc` codec file holds: spec, width, hash, rate, arrays and training provenance."""
    from ..codecs._base import read_state

    data = path.read_bytes()
    codec_id, spec, width, digest, arrays, fit_info = read_state(data)
    codec = load_codec(path)
    return {"path": str(path), "kind": "codec", "codec": format_spec(codec.spec), "codec_id": codec_id.decode(),
            "dim": width, "hash": digest, "fixed_bits_per_item": codec.fixed_bits, "bytes": len(data),
            "collection_codec": codec.collection,
            "arrays": {name: list(a.shape) for name, a in sorted(arrays.items())}, "fit_info": fit_info}


def _check(archive: Path, codec: Codec | None) -> tuple[list[str], int, int, bool]:
    """(problems, items, blocks, whether blocks were decoded) of an archive or sharded collection."""
    if is_manifest(archive):
        with ShardedArchive.open(archive, codec=codec, partial=True, check_hashes=False) as coll:  # verify() reports
            return coll.verify(), coll.items, sum(len(a.index) for a in coll.archives), True
    with Archive.open(archive, codec=codec) as arc:
        return arc.verify(), arc.items, len(arc.index), arc.codec_embedded or codec is not None


@app.command()
def codecs(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """List the codec families: what each is, its spec parameters (type, default, meaning) and examples."""
    rows = [codec_class(name).describe() for name in available_codecs()]
    if as_json:
        print_json(rows)
        return
    for r in rows:
        stdout.print(f"[bold]{r['name']}[/bold]  (id {r['id'].strip()}): {r['summary']}", highlight=False)
        if r["params"]:
            table = Table("parameter", "default", "meaning")
            for key, p in r["params"].items():
                table.add_row(f"{key} ({p['type']})", str(p["default"]), p["meaning"])
            stdout.print(table)
        stdout.print("examples: " + ", ".join(r["examples"]) + "\n", highlight=False, style="dim")


@app.command()
def demo(as_json: JsonFlag = False, json_out: JsonOutOpt = None) -> None:
    """Offline demo on 500 real COCO image/caption CLIP embeddings shipped with semzip.

    Fits codecs on half the images, compresses the other half into archives, and prints counted
    bits per image against text-image retrieval recall, uncompressed and at several rates.
    """
    from ..demo import print_table, run_demo

    rows = run_demo()
    if json_out is not None:
        with atomic_writer(json_out) as fh:
            fh.write(json.dumps(rows, indent=2).encode())
    if as_json:
        print_json(rows)
    else:
        print_table(rows, stdout)
