"""Evaluation commands: eval (semantic fidelity against counted rate) and pixelcodecs (JPEG/WebP/AVIF)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from .._errors import InputError
from ._app import JsonFlag, JsonOutOpt, app, option_rules, print_json, stderr, stdout
from .._inputs import read_all

if TYPE_CHECKING:
    from ..eval.datasets import EvalDataset, ImageEmbedder, TextEmbedder

ModelOpt = Annotated[str | None, typer.Option(
    "--model", help="CLIP model (open_clip ARCH:TAG) to embed images and class names; needs semzip.embed.")]
WeightsOpt = Annotated[str | None, typer.Option("--weights", help="Local CLIP weights file or folder for --model.")]
DeviceOpt = Annotated[str, typer.Option("--device", help="Device for --model: cpu, cuda, mps, auto.")]
TemplatesOpt = Annotated[str, typer.Option(
    "--templates", help="Prompt templates for class names: a set name (openai, photo, simple) or one template with {}.")]
QualitiesOpt = Annotated[str, typer.Option(
    "--qualities", help="Pixel-codec qualities, comma-separated (0-100).")]
PlotOpt = Annotated[Path | None, typer.Option("--plot", help="Write a rate-fidelity plot (PNG) here; needs matplotlib.")]


def _ints(text: str, what: str) -> list[int]:
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise InputError(f"{what} must be comma-separated integers, got {text!r}") from None


def _embedders(model: str | None, weights: str | None, device: str,
               templates: str) -> tuple[ImageEmbedder, TextEmbedder] | tuple[None, None]:
    if model is None:
        return None, None
    from ..eval.datasets import clip_embedders

    return clip_embedders(model, weights=weights, device=device, templates=templates)


@app.command("eval")
@option_rules(needs=(("weights", "model"),))
def eval_(
    dataset: Annotated[str, typer.Argument(help="An .npz of embeddings (schemas: docs/EVAL.md) or an image folder "
                                                "with one subfolder per class (needs --model).")],
    codecs: Annotated[list[str], typer.Option(
        "--codecs", help="Codec specs, comma-separated: `f16,sign,pq:M=32,K=256,opq=1`; may be repeated.")],
    train: Annotated[list[str] | None, typer.Option(
        "--train", help="Codec training data (`x.npy`, `x.npz:key`), may be repeated. Default: the dataset's "
                        "train+val split, else the evaluated items themselves (codec then counted in the archive).")] = None,
    fit_on_items: Annotated[bool, typer.Option(
        "--fit-on-items", help="Fit each codec on the evaluated items themselves and count it in the archive.")] = False,
    seed: Annotated[int, typer.Option(help="Seed for trainable codecs.")] = 0,
    seeds: Annotated[str | None, typer.Option("--seeds", help="Several training seeds instead of --seed, e.g. `0,1,2`: each trainable codec is fitted and measured once per seed; the plot shows the spread as error bars.")] = None,
    as_json: JsonFlag = False,
    json_out: JsonOutOpt = None,
    plot: PlotOpt = None,
    model: ModelOpt = None,
    weights: WeightsOpt = None,
    device: DeviceOpt = "cpu",
    templates: TemplatesOpt = "openai",
    pixel_codecs: Annotated[str | None, typer.Option(
        "--pixel-codecs", help="Also code the images with these pixel codecs (jpeg,webp,avif), re-embed them and "
                               "compare at equal accuracy; image folders with --model only.")] = None,
    qualities: QualitiesOpt = "1,5,10,20,30,50,75",
    vocab: Annotated[str | None, typer.Option(
        "--vocab", help="Text embeddings of a tag vocabulary (`text_lvis.npz`, `t.npz:key`): adds tags5, the share of "
                        "each item's 5 nearest words that survive compression.")] = None,
) -> None:
    """Semantic fidelity against counted rate for each codec: cosine, 10-NN overlap, zero-shot,
    nearest-centroid, retrieval and (with --vocab) tags@5, each also as a share of the uncompressed figure.

    Each codec writes a real archive; its payload and total bits per item (and bits per pixel when
    pixel counts are known) are read back from the file.

    Example: `semzip eval zeroshot_caltech101.npz --codecs f16,sign,pq:M=16,K=256,opq=1 --plot rf.png`
    """
    from ..eval import runner
    from ..eval.datasets import load_dataset
    from ..eval.plot import plot_format
    from ..eval.report import print_report, write_json

    specs = [s for text in codecs for s in runner.split_specs(text)]
    if plot is not None:
        plot_format(plot)
    image_embedder, text_embedder = _embedders(model, weights, device, templates)
    ds = load_dataset(dataset, text_embedder=text_embedder, image_embedder=image_embedder)
    if ds.image_paths is not None:
        ds.model = model  # the archives record the model that embedded the images
    if vocab is not None:
        words = read_all([vocab])
        if words.model and ds.model and words.model != ds.model:
            raise InputError(f"--vocab was embedded with {words.model}, the items with {ds.model}: not comparable")
        ds.tag_vocab = words.features
        if ds.tag_vocab.shape[1] != ds.items.shape[1]:
            raise InputError(f"--vocab embeddings are {ds.tag_vocab.shape[1]}-d but the items are {ds.items.shape[1]}-d")
    if ds.skipped:
        stderr.print(f"note: {len(ds.skipped)} unreadable image(s) left out: {', '.join(ds.skipped[:5])}"
                     + (" ..." if len(ds.skipped) > 5 else ""), highlight=False)
    if ds.labels is not None and ds.text_features is None and ds.classnames is not None:
        stderr.print("note: zero-shot skipped: the data has class names but no text embeddings; "
                     "--model embeds them with the CLIP text tower", highlight=False)
    if pixel_codecs is not None and (ds.image_paths is None or image_embedder is None):
        raise InputError("--pixel-codecs needs an image folder and --model: pixel codecs code images, not embeddings")
    train_X, train_name = (None, None)
    if train:
        train_X = read_all(train).features
        train_name = " + ".join(train)
    say = lambda s: stderr.print(f"  {s}", highlight=False, style="dim")  # noqa: E731
    first, *more = _ints(seeds, "--seeds") if seeds else [seed]
    report = runner.evaluate(ds, specs, train=train_X, train_name=train_name, fit_on_items=fit_on_items, seed=first,
                             progress=say)
    seeded = [row["codec"] for row in report["rows"] if "seed" in row]
    for s in more:  # codecs without a seed give the same figures at any seed: measured once
        report["rows"] += runner.evaluate(ds, seeded, train=train_X, train_name=train_name,
                                          fit_on_items=fit_on_items, seed=s, progress=say)["rows"]
    console = stderr if as_json else stdout  # --json keeps stdout for the JSON alone
    print_report(report, console)
    if pixel_codecs is not None and ds.image_paths is not None and image_embedder is not None:  # checked above
        _pixel_side(report, ds, ds.image_paths, pixel_codecs, qualities, image_embedder, console)
    if json_out is not None:
        write_json(report, json_out)
        console.print(f"JSON -> {json_out}", highlight=False)
    if plot is not None:
        _plot([report], plot, x="bpp" if pixel_codecs is not None else "payload_bits_per_item", console=console)
    if as_json:
        print_json(report)


def _pixel_side(report: dict[str, Any], ds: EvalDataset, paths: list[Path], names: str, qualities: str,
                embedder: ImageEmbedder, console: Console) -> None:
    from ..eval.pixel import equal_fidelity_ratios, pixel_codec_eval
    from ..eval.report import print_pixel_rows, print_ratios

    rows = pixel_codec_eval(paths, names.split(","), _ints(qualities, "--qualities"), embedder=embedder,
                            dataset=ds, progress=True)
    report["pixel_codecs"] = rows
    print_pixel_rows(rows, console, f"Pixel codecs on the same {len(paths)} images, re-embedded",
                     report["reference"])
    metric = next((m for m in ("zs_top1", "knn10") if m in report["reference"]["metrics"]), "cosine")
    report["equal_fidelity"] = {"metric": metric, "rows": equal_fidelity_ratios(report["rows"], rows, metric)}
    print_ratios(report["equal_fidelity"]["rows"], metric, console)


def _plot(reports: list[dict[str, Any]], path: Path, x: str, console: Console = stdout) -> None:
    from ..eval.plot import plot_rate_fidelity

    panels = plot_rate_fidelity(reports, path, x=x)
    console.print(f"plot ({len(panels)} panels) -> {path}", highlight=False)


@app.command()
@option_rules(needs=(("weights", "model"), ("plot", "model")))
def pixelcodecs(
    images: Annotated[list[Path], typer.Argument(help="Image files or folders (searched recursively).")],
    codecs: Annotated[str, typer.Option("--codecs", help="Pixel codecs, comma-separated.")] = "jpeg,webp,avif",
    qualities: QualitiesOpt = "1,5,10,20,30,50,75",
    model: ModelOpt = None,
    weights: WeightsOpt = None,
    device: DeviceOpt = "cpu",
    templates: TemplatesOpt = "openai",
    as_json: JsonFlag = False,
    json_out: JsonOutOpt = None,
    plot: PlotOpt = None,
) -> None:
    """Counted bits per pixel of JPEG, WebP and AVIF (Pillow) at each quality on your images.

    With `--model` and one folder of class subfolders, the decoded images are re-embedded with CLIP
    and their zero-shot accuracy (class names from the folder names) and fidelity are measured too.
    """
    from ..embed._images import image_files
    from ..eval.datasets import image_folder_dataset
    from ..eval.pixel import pixel_codec_eval
    from ..eval.report import print_pixel_rows, write_json
    from ..eval.runner import reference_row

    image_embedder, text_embedder = _embedders(model, weights, device, templates)
    names, qs = codecs.split(","), _ints(qualities, "--qualities")
    out: dict = {}
    if image_embedder is not None:
        if len(images) != 1 or not images[0].is_dir():
            raise InputError("--model needs exactly one folder with one subfolder per class")
        ds = image_folder_dataset(images[0], image_embedder, text_embedder)
        paths = ds.image_paths or []
        out["reference"] = reference_row(ds)
        rows = pixel_codec_eval(paths, names, qs, embedder=image_embedder, dataset=ds, progress=True)
    else:
        paths = []
        for p in images:
            if not p.exists():
                raise InputError(f"no such file or folder: {str(p)!r}")
            paths += image_files(p) if p.is_dir() else [p]
        rows = pixel_codec_eval(paths, names, qs, progress=True)
    out["pixel_codecs"] = rows
    console = stderr if as_json else stdout
    print_pixel_rows(rows, console, f"Pixel codecs on {len(paths)} images, {rows[0]['pixels']} pixels",
                     out.get("reference"))
    if image_embedder is None:
        console.print("No CLIP model given (--model): rates only, no re-embedded accuracy.", highlight=False, style="dim")
    if json_out is not None:
        write_json(out, json_out)
        console.print(f"JSON -> {json_out}", highlight=False)
    if plot is not None:
        _plot([{"dataset": images[0].name, "items": len(paths), "reference": out["reference"], "rows": [],
                "pixel_codecs": rows}], plot, x="bpp", console=console)
    if as_json:
        print_json(out)
