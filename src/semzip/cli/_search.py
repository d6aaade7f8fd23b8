"""Search commands: search, classify, tags, merge, serve (compressed-domain; see docs/SEARCH.md)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.table import Table

from .._errors import InputError
from .._inputs import read_embeddings, split_source
from ..shards import open_archives
from ._app import CodecFileOpt, app, codec_file, option_rules, stderr, stdout, write_rows
from ._embed import DeviceOpt, WeightsOpt

QueryModelOpt = Annotated[str | None, typer.Option("--model", help="CLIP model that embeds text queries (open_clip ARCH:TAG); default: the archive's own. Needed when the archive's model is unknown.")]

ArchivesArg = Annotated[list[Path], typer.Argument(help="Archive(s) or sharded collections (folder or manifest.json); several are searched as one collection.")]
RawOpt = Annotated[bool, typer.Option("--raw", help="Rank by raw inner product instead of cosine.")]


@app.command()
@option_rules(excludes=(("nprobe", "ray"), ("nprobe", "rerank"), ("ivf", "ray"), ("ivf", "rerank")))
def search(
    archives: ArchivesArg,
    text: Annotated[list[str] | None, typer.Option("--text", help="Text query (needs semzip.embed); repeat for several.")] = None,
    like: Annotated[list[str] | None, typer.Option("--like", help="Id of an item whose vector is the query; repeatable.")] = None,
    vector: Annotated[str | None, typer.Option("--vector", help="Query vectors: `q.npy` of shape (d,) or (q, d), or `x.npz:key`.")] = None,
    k: Annotated[int, typer.Option("-k", help="Hits per query.")] = 10,
    rerank: Annotated[int, typer.Option(help="Re-score this many best candidates on decoded vectors (0 = off).")] = 0,
    raw: RawOpt = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    codec: CodecFileOpt = None,
    model: QueryModelOpt = None,
    weights: WeightsOpt = None,
    device: DeviceOpt = "cpu",
    nprobe: Annotated[int | None, typer.Option("--nprobe", help="Search through the IVF index of each archive or shard (`semzip index`), scanning the items of this many lists per query in each.", rich_help_panel="Scale-out")] = None,
    ivf: Annotated[Path | None, typer.Option("--ivf", help="IVF index file (default: ARCHIVE.ivf).", rich_help_panel="Scale-out")] = None,
    shortlist: Annotated[int | None, typer.Option("--shortlist", help="With --nprobe on pq archives: faiss's first shortlist per query (4- and 8-bit pq, K=16 or 256: default 256, work only, the top-k is exact over the probed lists whatever it is; other K: the candidates kept and re-scored, default max(500, 50 k), a cap on recall); 0: score every probed item in numpy.", rich_help_panel="Scale-out")] = None,
    ray: Annotated[bool, typer.Option("--ray", help="Scan each archive or shard in its own Ray task and merge the top-k (same results as one process).", rich_help_panel="Scale-out")] = False,
    address: Annotated[str | None, typer.Option("--address", help="Ray cluster to use with --ray (default: $RAY_ADDRESS, else a local Ray).", rich_help_panel="Scale-out")] = None,
) -> None:
    """Find the items most similar to queries, computing scores on the codes (nothing is decoded).

    Example: `semzip search photos.smz --like IMG_0042.jpg -k 5`, or with local CLIP weights
    `semzip search photos.smz --text "a red car" --weights ViT-B-32.safetensors`; over a sharded
    collection in Ray workers: `semzip search big/ --vector q.npy --ray`; through an IVF index
    (`semzip index photos.smz` first): `semzip search photos.smz --like IMG_0042.jpg --nprobe 16`. Scores are cosines
    between the query and the items' reconstructions (`--raw`: inner products).
    """
    from ..search import Collection
    from ..search._text import embed_queries, query_model

    given = [name for name, v in (("--text", text), ("--like", like), ("--vector", vector)) if v]
    if len(given) != 1:
        stray = [str(a) for a in archives if not a.exists()] if not given else []
        hint = f"; {stray[0]!r} is not a file: a text query goes in --text {stray[0]!r}" if stray else ""
        raise InputError(f"give exactly one query kind: --text, --like or --vector (got {', '.join(given) or 'none'}){hint}")
    with open_archives(archives, codec=codec_file(codec)) as arcs, Collection(arcs) as coll:
        if text:
            labels = list(text)
            Q = embed_queries(text, query_model(coll.model, model), coll.dim, weights=weights, device=device)
        elif like:
            labels, Q = [f"like:{i}" for i in like], np.stack([coll.vector(i) for i in like])
        else:
            Q = _read_vectors(str(vector), coll.dim)
            labels = [f"{vector}[{i}]" for i in range(len(Q))]
        if ivf is not None:
            from ..search._ivf import IVFSearcher

            if len(coll.archives) != 1:
                raise InputError("--ivf names one archive's index file; without it each archive (or shard) "
                                 "is searched with its own ARCHIVE.ivf")
            result = IVFSearcher(coll.archives[0], ivf).search(Q, k, nprobe=nprobe or 16, normalize=not raw,
                                                               shortlist=shortlist)
        elif nprobe is not None:
            from ..search._ivf import search_ivf

            result = search_ivf(coll.archives, Q, k, nprobe=nprobe, normalize=not raw, shortlist=shortlist)
        elif ray:
            from ..scale._search import search_ray

            result = search_ray(coll, Q, k, normalize=not raw, rerank=rerank, address=address)
        else:
            result = coll.search(Q, k, normalize=not raw, rerank=rerank)
    if as_json:
        typer.echo(json.dumps(result.to_json(labels), indent=2))
        return
    for label, ids, scores in zip(labels, result.ids, result.scores):
        table = Table("rank", "id", "score", title=label, title_justify="left")
        for r, (item_id, s) in enumerate(zip(ids, scores), 1):
            table.add_row(str(r), item_id, f"{s:.4f}")
        stdout.print(table)


def _read_vectors(arg: str, dim: int) -> np.ndarray:
    path, key = split_source(arg)
    if key is None and path.suffix == ".npy":
        if not path.is_file():
            raise InputError(f"no such vector file: {str(path)!r}")
        try:
            arr = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise InputError(f"cannot read {str(path)!r} as .npy ({exc})") from None
        if arr.ndim == 1:
            arr = arr[None, :]
        if arr.ndim != 2 or arr.shape[1] != dim:
            raise InputError(f"{str(path)!r}: query vectors must have shape ({dim},) or (q, {dim}), got {arr.shape}")
        return arr
    return read_embeddings(arg).features


@app.command()
@option_rules(one_of=(("labels", "text_embeddings"),), needs=(("text_embeddings", "labels_from"),))
def classify(
    archives: ArchivesArg,
    labels: Annotated[str | None, typer.Option("--labels", help="Class names `cat,dog,...` or `@file` (one per line), embedded with CLIP.")] = None,
    templates: Annotated[str, typer.Option("--templates", help="Prompt set for --labels: `openai` (80), `simple` (7), `photo` (1), or templates like `a photo of a {}.` separated by `|`.")] = "openai",
    text_embeddings: Annotated[str | None, typer.Option("--text-embeddings", help="Precomputed class text embeddings (C, d): `t.npy` or `t.npz:key` (no CLIP model needed).")] = None,
    labels_from: Annotated[str | None, typer.Option("--labels-from", help="Class names for --text-embeddings: a key of its .npz, or a text file with one per line.")] = None,
    model: QueryModelOpt = None,
    weights: WeightsOpt = None,
    device: DeviceOpt = "cpu",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write every item's label: CSV (id,label,score), or JSON if it ends in .json.")] = None,
    raw: RawOpt = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON: counts per label and every item's label and score.")] = False,
    codec: CodecFileOpt = None,
) -> None:
    """Zero-shot label every item, scoring class text embeddings against the codes (nothing is decoded).

    With CLIP: `semzip classify photos.smz --labels "cat,dog,car" --templates openai`.
    Without a CLIP model: `semzip classify photos.smz --text-embeddings text.npz:text_features
    --labels-from classnames -o labels.csv`.
    """
    from ..search import Collection
    from ..search._text import embed_classes, query_model
    from ._embed import parse_labels

    with open_archives(archives, codec=codec_file(codec)) as arcs, Collection(arcs) as coll:
        if labels is not None:
            names = parse_labels(labels)
            prompts: str | list[str] = templates if "|" not in templates else [t.strip() for t in templates.split("|")]
            T = embed_classes(names, prompts, query_model(coll.model, model), coll.dim, weights=weights, device=device)
        else:
            assert labels_from is not None  # option_rules: --text-embeddings needs --labels-from
            T = read_embeddings(str(text_embeddings)).features
            names = _read_labels(str(text_embeddings), labels_from)
        if T.shape[1] != coll.dim:
            raise InputError(f"class embeddings are {T.shape[1]}-d but the archive holds {coll.dim}-d items")
        predicted, scores = coll.classify(T, names, normalize=not raw)
        ids = [i for a in coll.archives for i in a.ids]
    counts = dict(zip(*np.unique(predicted, return_counts=True)))
    summary: dict[str, Any] = {"items": len(ids), "classes": len(names),
               "counts": {str(n): int(c) for n, c in sorted(counts.items(), key=lambda x: -x[1])}}
    if output is not None:
        write_rows(output, [{"id": i, "label": str(p), "score": float(s)} for i, p, s in zip(ids, predicted, scores)],
                   ["id", "label", "score"], ((i, p, f"{s:.6f}") for i, p, s in zip(ids, predicted, scores)))
    if as_json:
        summary["predictions"] = [{"id": i, "label": str(p), "score": round(float(s), 4)}
                                  for i, p, s in zip(ids, predicted, scores)]
        typer.echo(json.dumps(summary, indent=2))
        return
    if len(ids) <= 20:
        table = Table("id", "label", "cosine" if not raw else "score")
        for i, p, s in zip(ids, predicted, scores):
            table.add_row(i, str(p), f"{s:.3f}")
        stdout.print(table)
    table = Table("label", "items", title=f"{len(ids)} items, {len(names)} classes", title_justify="left")
    for name, c in list(summary["counts"].items())[:30]:
        table.add_row(name, str(c))
    stdout.print(table)
    if output is not None:
        stdout.print(f"labels of {len(ids)} items -> {output}")


@app.command()
def tags(
    archives: ArchivesArg,
    vocab: Annotated[str, typer.Option("--vocab", help="Text embeddings of the vocabulary, one per word: `t.npz` (its 2-D array, or `t.npz:key`) or `t.npy`, e.g. ../shared/data/clip-vit-b-32/text_lvis.npz.")],
    names: Annotated[str | None, typer.Option("--names", help="The words: a key of the --vocab .npz, or a text file with one per line. Default: the .npz's `classnames`, `names` or `labels`.")] = None,
    k: Annotated[int, typer.Option("-k", help="Tags per item.")] = 5,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write every item's tags: CSV (id,rank,tag,score), or JSON if it ends in .json.")] = None,
    raw: RawOpt = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON: every item's tags and scores.")] = False,
    codec: CodecFileOpt = None,
) -> None:
    """Tag every item with the k words of a vocabulary nearest to it, scored on the codes (nothing is decoded).

    Example: `semzip tags photos.smz --vocab text_lvis.npz -k 5 -o tags.csv`. The vocabulary must
    come from the text tower of the model that embedded the items; `semzip eval --vocab` measures
    how many tags survive compression (tags5).
    """
    from ..search import Collection

    words = read_embeddings(vocab)
    labels = _read_labels(vocab, names) if names is not None else _default_names(vocab)
    with open_archives(archives, codec=codec_file(codec)) as arcs, Collection(arcs) as coll:
        if words.features.shape[1] != coll.dim:
            raise InputError(f"--vocab embeddings are {words.features.shape[1]}-d but the archive holds {coll.dim}-d items")
        if words.model and coll.model not in ("unknown", words.model):
            raise InputError(f"--vocab was embedded with {words.model}, the archive with {coll.model}: not comparable")
        top, scores = coll.tags(words.features, labels, k=k, normalize=not raw)
        ids = [i for a in coll.archives for i in a.ids]
    rows: list[dict[str, Any]] = [{"id": i, "tags": [{"tag": str(t), "score": round(float(s), 4)} for t, s in zip(ts, ss)]}
            for i, ts, ss in zip(ids, top, scores)]
    if output is not None:
        write_rows(output, rows, ["id", "rank", "tag", "score"],
                   ((r["id"], rank, t["tag"], t["score"]) for r in rows for rank, t in enumerate(r["tags"], 1)))
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table("id", f"top {k} tags", title=f"{len(ids)} items, {len(labels)} words", title_justify="left")
    for row in rows[:20]:
        table.add_row(row["id"], ", ".join(t["tag"] for t in row["tags"]))
    stdout.print(table)
    if len(rows) > 20:
        stdout.print(f"... and {len(rows) - 20} more" + ("" if output else " (-o tags.csv writes them all)"))
    if output is not None:
        stdout.print(f"tags of {len(ids)} items -> {output}")


def _default_names(vocab: str) -> list[str]:
    path, _ = split_source(vocab)
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as data:
            for key in ("classnames", "names", "labels"):
                if key in data.files:
                    return _read_labels(vocab, key)
    raise InputError(f"name the words of {vocab!r}: --names KEY (of its .npz) or --names words.txt")


def _read_labels(embeddings_arg: str, labels_from: str) -> list[str]:
    path, _ = split_source(embeddings_arg)
    if path.suffix == ".npz" and not Path(labels_from).is_file():
        try:
            with np.load(path, allow_pickle=False) as data:
                if labels_from not in data.files:
                    raise InputError(f"{str(path)!r} has no array {labels_from!r}; it has: {', '.join(data.files)}")
                return [str(x) for x in data[labels_from]]
        except (ValueError, OSError, zipfile.BadZipFile) as exc:
            raise InputError(f"cannot read labels {labels_from!r} from {str(path)!r} ({exc})") from None
    file = Path(labels_from)
    if not file.is_file():
        raise InputError(f"--labels-from {labels_from!r} is neither a key of {str(path)!r} nor a text file")
    return [line.strip() for line in file.read_text(encoding="utf-8").splitlines() if line.strip()]


@app.command()
def merge(
    archives: Annotated[list[Path], typer.Argument(help="Archives written with one codec, in order.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="New archive (written atomically).")],
) -> None:
    """Join archives of the same codec, width and model into one; blocks are copied, nothing is re-encoded."""
    from ..container import Archive
    from ..search import merge_archives

    merge_archives(archives, output)
    with Archive.open(output) as arc:
        stdout.print(f"{arc.items} items from {len(archives)} archives -> {output} ({arc.info()['total_bits'] // 8} bytes)")


@app.command()
def serve(
    archives: ArchivesArg,
    images: Annotated[Path | None, typer.Option("--images", help="Folder of the originals: ids that are paths under it get thumbnails.")] = None,
    port: Annotated[int, typer.Option(help="Port (0 = any free port).")] = 0,
    host: Annotated[str, typer.Option("--host", help="Address to listen on; anything but loopback lets other machines query your archives.")] = "127.0.0.1",
    k: Annotated[int, typer.Option("-k", help="Hits shown per page.")] = 12,
    vocab: Annotated[str | None, typer.Option("--vocab", help="Text embeddings of a vocabulary (as in `semzip tags`): each hit shows its 3 best tags.", rich_help_panel="Shown with each hit")] = None,
    names: Annotated[str | None, typer.Option("--names", help="The --vocab words: a key of its .npz or a text file.", rich_help_panel="Shown with each hit")] = None,
    captions: Annotated[Path | None, typer.Option("--captions", help="Captions from `semzip caption -o` (CSV or JSON, by id).", rich_help_panel="Shown with each hit")] = None,
    generated: Annotated[Path | None, typer.Option("--generated", help="A folder from `semzip generate`: each hit shows its generated image.", rich_help_panel="Shown with each hit")] = None,
    codec: CodecFileOpt = None,
    model: QueryModelOpt = None,
    weights: WeightsOpt = None,
    device: DeviceOpt = "cpu",
) -> None:
    """A local search page at http://127.0.0.1:PORT/ (queries `like:ID`, or text with a CLIP model). Ctrl-C stops it.

    Click a hit for more like it; pages go on below the hits. Example: `semzip serve photos.smz
    --images photos/ --vocab text_lvis.npz --captions captions.csv --generated gen/`.
    """
    from ..decode.caption import read_captions
    from ..search import Collection
    from ..search._serve import SearchApp, make_server

    for name, folder in (("--images", images), ("--generated", generated)):
        if folder is not None and not folder.is_dir():
            raise InputError(f"{name} {str(folder)!r} is not a folder")
    with open_archives(archives, codec=codec_file(codec)) as arcs, \
            Collection(arcs, preload=True) as coll:
        text = {"model": model, "weights": weights, "device": device}
        words = None
        if vocab is not None:
            words = (read_embeddings(vocab).features, _read_labels(vocab, names) if names else _default_names(vocab))
        said = None
        if captions is not None:
            ids = [i for a in coll.archives for i in a.ids]
            rows, texts = read_captions(captions, ids, len(ids))
            said = {ids[r]: t for r, t in zip(rows, texts)}
        page_app = SearchApp(coll, images=images, k=k, text=text, vocab=words, captions=said, generated=generated)
        if host not in ("127.0.0.1", "localhost", "::1"):
            stderr.print(f"warning: listening on {host}: anyone who can reach it can search these archives and "
                         "see their images; there is no authentication", highlight=False)
        server = make_server(page_app, host=host, port=port)
        bound_host, bound = server.server_address[:2]
        stdout.print(f"serving {coll.items} items at http://{bound_host!s}:{bound}/  (Ctrl-C to stop)")
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()


@app.command()
def export(
    archive: Annotated[Path, typer.Argument(help="Archive or sharded collection to export.")],
    faiss_out: Annotated[Path, typer.Option("--faiss", help="faiss index file to write (atomically).")],
    codec: CodecFileOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Write an archive as a faiss index for tools built on faiss (autofaiss, clip-retrieval).

    pq archives become IndexPQ (with the OPQ rotation as a pre-transform) and f16 archives
    IndexScalarQuantizer(fp16), their codes copied as they are; other codecs have no faiss layout,
    so their decoded vectors go into an IndexFlatIP, and the output says so. Inner-product metric;
    row i of the index is item i (`semzip ls` lists the ids). Example: `semzip export photos.smz --faiss photos.index`.
    """
    from ..shards import open_collection
    from ..search._export import export_faiss

    with open_collection(archive, codec=codec_file(codec)) as arc:
        result = export_faiss(arc, faiss_out)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    stdout.print(f"{result['items']} items -> {faiss_out} ({result['index']}, {result['bytes']} bytes): {result['note']}"
                 "; row i is item i (`semzip ls` lists the ids)", highlight=False)


@app.command()
def index(
    archive: Annotated[Path, typer.Argument(help="Archive file, or a sharded collection (folder or manifest.json): each shard gets its own index.")],
    nlist: Annotated[int | None, typer.Option("--nlist", help="Inverted lists (default: a power of two near 4 sqrt(items)).")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Index file of an archive file (default: ARCHIVE.ivf, found by `search --nprobe`); shards' indexes are SHARD.smz.ivf.")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the k-means sample and initialisation.")] = 0,
    lists: Annotated[str, typer.Option("--lists", help="`kmeans` (lists clustered from the decoded items) or `codes` (the codec's own first stage: rq's first codebook, pqvae's coarse stage, a stack's first stage such as `coarse:bits=8`; nothing clustered).")] = "kmeans",
    codec: CodecFileOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Build an IVF index beside an archive for sub-linear search (`semzip search --nprobe P`).

    Spherical k-means on a sample of the decoded vectors makes the lists and every item goes to its
    nearest list, or (`--lists codes`) the codec's first stage is the partition, read from the codes.
    The codes stay where they are (the index holds centroids and item positions).
    `--nprobe` = all lists gives exactly the flat search. A sharded collection gets one index per
    shard, in its folder (`--nlist` then applies to each). Example: `semzip index photos.smz --nlist 1024`.
    """
    from ..shards import open_collection
    from ..search._ivf import build_ivf

    with open_collection(archive, codec=codec_file(codec)) as coll:
        if output is not None and len(coll.archives) != 1:
            raise InputError("--output names one index file: a sharded collection's shards each get SHARD.smz.ivf")
        results = [build_ivf(arc, output, nlist=nlist, seed=seed, lists=lists, progress=not as_json)
                   for arc in coll.archives]
    if as_json:
        typer.echo(json.dumps(results[0] if len(results) == 1 else results, indent=2))
        return
    for result in results:
        sizes = result["list_items"]
        stdout.print(f"{result['nlist']} lists over {result['items']} items -> {result['path']} ({result['bytes']} "
                     f"bytes; items per list {sizes['min']}..{sizes['max']}, median {sizes['median']:.0f})",
                     highlight=False)

