"""CLIP commands: embed image files; the image-folder input of compress; label parsing for classify."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import numpy as np
import typer

from .._atomic import atomic_writer
from .._errors import InputError
from ..container import DEFAULT_MODEL
from ._app import JsonFlag, app, stderr, stdout

if TYPE_CHECKING:
    from ..embed import Embedded

ModelOpt = Annotated[str, typer.Option("--model", help="CLIP model, open_clip `ARCH:TAG` (e.g. `ViT-L-14-336:openai`).", rich_help_panel="CLIP model")]
WeightsOpt = Annotated[Path | None, typer.Option("--weights", help="Local weights: a .safetensors/.bin/.pt file, or a folder laid out like a hub repo.", rich_help_panel="CLIP model")]
DeviceOpt = Annotated[str, typer.Option("--device", help="`cpu`, `cuda`, `cuda:N`, `mps`, or `auto` (a GPU when there is one).", rich_help_panel="CLIP model")]
BatchOpt = Annotated[int, typer.Option("--batch-size", help="Images per model call.", rich_help_panel="CLIP model")]
WorkersOpt = Annotated[int | None, typer.Option("--workers", help="Image decoding threads (default: CPU count, at most 8).", rich_help_panel="CLIP model")]
CacheOpt = Annotated[Path | None, typer.Option("--cache", help="Embedding cache file (default: ~/.cache/semzip/embeddings.sqlite or $SEMZIP_CACHE).", rich_help_panel="CLIP model")]
NoCacheOpt = Annotated[bool, typer.Option("--no-cache", help="Neither read nor write the embedding cache.", rich_help_panel="CLIP model")]
StrictOpt = Annotated[bool, typer.Option("--strict", help="Fail on the first unreadable image instead of skipping it.", rich_help_panel="CLIP model")]


@dataclass(frozen=True)
class ClipOptions:
    """The "CLIP model" option group: which model, its local weights, where it runs, images per call."""

    model: str = DEFAULT_MODEL
    weights: Path | None = None
    device: str = "cpu"
    batch_size: int = 64


def embed_images(inputs: list[str], clip: ClipOptions, *, workers: int | None = None, cache: Path | None = None,
                 no_cache: bool = False, strict: bool = False) -> Embedded:
    """Files and folders -> embeddings (ids relative to a single folder), skipped files reported on stderr."""
    from ..embed import collect_images, default_cache_path, embed_paths

    paths, ids = collect_images(inputs)
    store = None if no_cache else (cache or default_cache_path())
    result = embed_paths(paths, clip.model, ids=ids, weights=clip.weights, device=clip.device,
                         batch_size=clip.batch_size, workers=workers, cache=store, strict=strict, progress=True)
    for failure in result.failures:
        stderr.print(f"semzip: skipped {failure.path}: {failure.reason}", markup=False, highlight=False)
    if not result.ids:
        raise InputError(f"none of the {len(paths)} inputs could be embedded")
    return result


@app.command()
def embed(
    images: Annotated[list[str], typer.Argument(help="Image files and/or folders (walked recursively).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="`.npz` to write: features, ids, pixels, model.")],
    model: ModelOpt = DEFAULT_MODEL,
    weights: WeightsOpt = None,
    device: DeviceOpt = "cpu",
    batch_size: BatchOpt = 64,
    workers: WorkersOpt = None,
    cache: CacheOpt = None,
    no_cache: NoCacheOpt = False,
    strict: StrictOpt = False,
    as_json: JsonFlag = False,
) -> None:
    """Embed images with a CLIP model into an `.npz` (L2-normalised float32 `features` and `ids`).

    Unreadable files are reported and skipped (`--strict` fails instead). Files already embedded by
    the same model are served from the cache. Example: `semzip embed photos/ -o photos.npz`
    """
    result = embed_images(images, ClipOptions(model, weights, device, batch_size), workers=workers, cache=cache,
                          no_cache=no_cache, strict=strict)
    with atomic_writer(output) as fh:
        np.savez(fh, features=result.features, ids=np.array(result.ids, dtype=str), pixels=result.pixels,
                 model=np.array(result.model_id))
    if as_json:
        typer.echo(json.dumps({"output": str(output), "images": len(result.ids), "cached": result.cached,
                               "skipped": [{"path": str(f.path), "reason": f.reason} for f in result.failures],
                               "model": result.model_id, "dim": int(result.features.shape[1])}, indent=2))
        return
    skipped = f", {len(result.failures)} skipped" if result.failures else ""
    stdout.print(f"embedded {len(result.ids)} images ({result.cached} from cache{skipped}) with "
                 f"{result.model_id} -> {output} ({result.features.shape[1]}-d)")


def parse_labels(arg: str) -> list[str]:
    """'cat,dog' or '@file' (one label per line)."""
    if arg.startswith("@"):
        try:
            text = Path(arg[1:]).read_text(encoding="utf-8")
        except OSError as exc:
            raise InputError(f"cannot read labels file {arg[1:]!r}: {exc.strerror}") from None
        labels = [line.strip() for line in text.splitlines()]
    else:
        labels = [part.strip() for part in arg.split(",")]
    labels = [label for label in labels if label]
    if len(labels) < 2:
        raise InputError("give at least two labels, e.g. --labels 'cat,dog' or --labels @labels.txt")
    return labels
