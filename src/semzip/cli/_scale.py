"""Scale-out options of `semzip compress --ray` (Ray Data, sharded output; see docs/SCALE.md)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ._app import stdout

if TYPE_CHECKING:
    from ._embed import ClipOptions

RayOpt = Annotated[bool, typer.Option("--ray", help="Compress with a Ray Data pipeline into a resumable sharded collection (OUTPUT is a folder).", rich_help_panel="Ray")]
RayWorkersOpt = Annotated[int, typer.Option("--workers", help="With --ray: parallel Ray workers (actors), each embedding/encoding whole shards.", rich_help_panel="Ray")]
ShardItemsOpt = Annotated[int, typer.Option("--shard-items", help="With --ray: inputs per shard archive.", rich_help_panel="Ray")]
FitItemsOpt = Annotated[int, typer.Option("--fit-items", help="With --ray and a codec spec: size of the seeded sample the codec is fitted on.", rich_help_panel="Ray")]
AddressOpt = Annotated[str | None, typer.Option("--address", help="With --ray: Ray cluster address (default $RAY_ADDRESS, else a local Ray).", rich_help_panel="Ray")]


@dataclass(frozen=True)
class RayOptions:
    """The "Ray" option group of `compress --ray`."""

    workers: int
    shard_items: int
    fit_items: int
    address: str | None


def compress_ray(input: str, codec: str, output: Path, clip: ClipOptions, model_given: bool,
                 options: RayOptions) -> None:
    """Run `semzip.scale.compress_sharded` and print one line per finished shard and a summary.
    `clip.model` is passed on only when `model_given` (else embedding files keep the model they record)."""
    from ..shards import ShardedArchive
    from ..scale import compress_sharded

    def report(record: dict) -> None:
        skipped = f", {len(record['skipped'])} skipped" if record["skipped"] else ""
        stdout.print(f"shard {record['index']}: {record['items']} items{skipped} -> {record['file']}")

    manifest = compress_sharded(input, output, codec, workers=options.workers, shard_items=options.shard_items,
                                fit_items=options.fit_items, model=clip.model if model_given else None,
                                weights=clip.weights, device=clip.device, batch_size=clip.batch_size,
                                address=options.address, on_shard=report)
    with ShardedArchive.open(output) as coll:
        info = coll.info()
    stdout.print(f"{info['items']} items in {info['shards']} shards -> {output}: "
                 f"{info['payload_bits_per_item']:.1f} payload bits/item, {info['bits_per_item']:.1f} bits/item "
                 f"in all (codec {manifest['codec']['spec']}, hash {manifest['codec']['hash'][:12]})")
