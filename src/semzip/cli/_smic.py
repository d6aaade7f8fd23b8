"""Collection commands: compact (re-learn the codec of a drifted archive, or purge a sharded collection's
deleted items), atoms (read a SMIC dictionary)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.table import Table

from .._errors import InputError
from ..compaction import compact_archive, purge_collection
from ..container import Archive
from ..semantic import atom_concepts
from ..shards import is_manifest
from ._app import CodecFileOpt, app, codec_file, stdout


@app.command()
def compact(
    archive: Annotated[Path, typer.Argument(help="Archive to re-learn and rewrite (replaced atomically), or a sharded collection whose deleted items to purge.")],
    spec: Annotated[str | None, typer.Option(help="Codec spec to fit instead of the archive's own.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace the archive even if the new one is not smaller.")] = False,
    seed: Annotated[int, typer.Option(help="Seed for the codec's training.")] = 0,
    codec: CodecFileOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Re-learn an archive's codec (e.g. a SMIC dictionary) on all its items after appends have drifted.

    Decodes every item, fits the codec again and rewrites the archive in the same order with the
    same ids, pixel counts and model; the file is replaced only if it gets smaller (or `--force`).

    For a sharded collection (`semzip compact big/`): purges the items `semzip delete` tombstoned,
    rewriting only the shards that hold them (codes copied, not re-coded; the shared codec stays).
    """
    if is_manifest(archive):
        if spec is not None or force:
            raise InputError("a collection's shards share one codec: compact FOLDER only purges deleted items "
                             "(no --spec or --force)")
        done = purge_collection(archive, codec=codec_file(codec))
        if as_json:
            typer.echo(json.dumps(done, indent=2))
            return
        grew = done["shards_rewritten"] and done["bytes_after"] > done["bytes_before"]
        stdout.print(f"purged {done['purged']} deleted items from {archive}: {done['shards_rewritten']} shard(s) "
                     f"rewritten, {done['items']} items" + (f", {done['bytes_before']} -> {done['bytes_after']} bytes"
                                                           if done["shards_rewritten"] else "")
                     + (" (larger: a shard whose ids were its positions 0..n-1 stored them for free; with gaps "
                        "they are stored)" if grew else ""), highlight=False)
        return
    report = compact_archive(archive, spec, seed=seed, force=force, progress=not as_json)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    verb = "rewrote" if report["replaced"] else "kept (refit was not smaller)"
    stdout.print(f"{verb} {archive}: {report['items']} items, {report['old_bits_per_item']:.1f} -> "
                 f"{report['new_bits_per_item']:.1f} bits/item; {report['old_spec']} -> {report['new_spec']}; "
                 f"mean cosine to previous decodes {report['cos_to_previous']:.4f}")


@app.command()
def atoms(
    archive: Annotated[Path, typer.Argument(help="Archive coded with a smic codec.")],
    vocab: Annotated[Path, typer.Option("--vocab", help="Text embeddings .npz (e.g. text_lvis.npz).")],
    top: Annotated[int, typer.Option(help="Concepts shown per atom.")] = 5,
    features_key: Annotated[str, typer.Option(help="Array of text embeddings in the vocabulary file.")] = "text_features",
    names_key: Annotated[str, typer.Option(help="Array of concept names in the vocabulary file.")] = "classnames",
    codec: CodecFileOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show what each atom of a SMIC dictionary means: its closest text concepts, most used atoms first."""
    with Archive.open(archive, codec=codec_file(codec)) as arc:
        fitted = arc.codec
    T, names = _read_vocab(vocab, features_key, names_key)
    rows = sorted(atom_concepts(fitted, T, names, top=top), key=lambda r: -r["usage"])
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table("atom", "items %", "closest concepts (cosine)")
    for r in rows:
        table.add_row(str(r["atom"]), f"{100 * r['usage']:.1f}",
                      ", ".join(f"{name} ({score:.2f})" for name, score in r["concepts"]))
    stdout.print(table)


def _read_vocab(path: Path, features_key: str, names_key: str) -> tuple[np.ndarray, list[str]]:
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in (features_key, names_key) if k not in z.files]
            if missing:
                raise InputError(f"vocabulary {str(path)!r} has no {', '.join(missing)}; it has {', '.join(z.files)}")
            return z[features_key], [str(n) for n in z[names_key]]
    except (OSError, ValueError, TypeError, zipfile.BadZipFile, EOFError, AttributeError) as exc:
        raise InputError(f"cannot read vocabulary {str(path)!r} as .npz ({exc})") from None
