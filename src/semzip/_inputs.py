"""Reading embedding files named on the command line: `x.npy`, `x.npz:key`, or `x.npz` with one matrix."""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from ._errors import InputError
from ._validate import check_embeddings


# Image files a folder walk picks up; a file named explicitly is tried whatever its name.
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".gif", ".tif", ".tiff",
                            ".bmp", ".dib", ".ppm", ".pgm", ".pbm", ".heic", ".heif", ".avif"})


#: The parts of a clip-retrieval / autofaiss embedding folder: `img_emb/img_emb_N.npy`,
#: `text_emb/text_emb_N.npy` and `metadata/metadata_N.parquet`, N = 0, 1, ...
FOLDER_PARTS = ("img_emb", "text_emb")
#: Metadata columns that name an item, in order of preference.
ID_COLUMNS = ("id", "image_path", "url", "key")


def split_source(arg: str) -> tuple[Path, str | None]:
    """'file.npz:key' -> (Path('file.npz'), 'key'); 'folder:text_emb' for an embedding folder's text
    part; other arguments name a file or folder and no key."""
    head, sep, key = arg.rpartition(":")
    if sep and key and (head.endswith(".npz") or (key in FOLDER_PARTS and is_embedding_folder(Path(head)))):
        return Path(head), key
    return Path(arg), None


def is_embedding_folder(path: Path) -> bool:
    """True for a clip-retrieval / autofaiss output folder (img_emb/ or text_emb/ of .npy parts)."""
    return path.is_dir() and any((path / part).is_dir() and any((path / part).glob(f"{part}_*.npy"))
                                 for part in FOLDER_PARTS)


def read_parquet_column(path: Path, columns: tuple[str, ...], what: str) -> tuple[str, list[str]]:
    """(column name, its values as strings) of the first of `columns` a parquet file has."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise InputError(f"reading {what} from parquet needs pyarrow: pip install 'semzip[parquet]'") from None
    try:
        names = pq.read_schema(path).names
        name = next((c for c in columns if c in names), None)
        if name is None:
            raise InputError(f"{str(path)!r} has none of the columns {', '.join(columns)} ({what}); it has: {', '.join(names)}")
        values = pq.read_table(path, columns=[name]).column(name).to_pylist()
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read {str(path)!r} as parquet ({exc})") from None
    if any(v is None for v in values):
        raise InputError(f"{str(path)!r}: column {name!r} has empty values")
    return name, [str(v) for v in values]


def _read_embedding_folder(folder: Path, part: str) -> Embeddings:
    """A clip-retrieval folder's `part` (img_emb or text_emb), its .npy files in numeric order, with ids
    from metadata/metadata_N.parquet when present (id, image_path, url or key), else N/row."""
    files = sorted((folder / part).glob(f"{part}_*.npy"), key=lambda f: _part_number(f, part))
    if not files:
        raise InputError(f"{str(folder)!r} has no {part}/{part}_N.npy files")
    arrays: list[np.ndarray] = []
    ids: list[str] = []
    for f in files:
        n = _part_number(f, part)
        try:
            X = np.load(f, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise InputError(f"cannot read {str(f)!r} as .npy ({exc})") from None
        arrays.append(check_embeddings(X, dim=arrays[0].shape[1] if arrays else None, name=str(f)))
        meta = folder / "metadata" / f"metadata_{n}.parquet"
        if meta.is_file():
            _, names = read_parquet_column(meta, ID_COLUMNS, "item ids")
            if len(names) != len(X):
                raise InputError(f"{str(meta)!r} has {len(names)} rows for the {len(X)} embeddings of {f.name}")
            ids += names
        else:
            ids += [f"{n}/{i}" for i in range(len(X))]
    return Embeddings(np.concatenate(arrays), ids, None, None)


def _part_number(f: Path, part: str) -> int:
    tail = f.stem[len(part) + 1 :]
    if not tail.isdigit():
        raise InputError(f"{str(f)!r}: embedding folder parts are named {part}_N.npy")
    return int(tail)


class Embeddings(NamedTuple):
    """Embeddings read from a file, with what `semzip embed` stores beside them when present."""

    features: np.ndarray
    ids: list[str] | None
    model: str | None
    pixels: np.ndarray | None


def read_embeddings(arg: str) -> Embeddings:
    """Load float32 (n, d) embeddings, plus the `ids`, `pixels` (per row) and `model` (a string)
    stored beside them in an .npz, if any."""
    path, key = split_source(arg)
    if is_embedding_folder(path):
        return _read_embedding_folder(path, key or "img_emb")
    if not path.is_file():
        raise InputError(f"no such embedding file: {str(path)!r}")
    if path.suffix.lower() not in (".npy", ".npz"):
        raise InputError(f"{str(path)!r} is not an embedding file (.npy or .npz); images are embedded by "
                         "`semzip embed` (and by `compress` when it is given only images)")
    try:
        loaded = np.load(path, allow_pickle=False)
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise InputError(f"cannot read {str(path)!r} as .npy/.npz ({exc})") from None
    if isinstance(loaded, np.ndarray):
        if key is not None:
            raise InputError(f"{str(path)!r} is a single array; drop ':{key}'")
        return Embeddings(check_embeddings(loaded, name=str(path)), None, None, None)
    with loaded:
        if key is None:
            if "features" in loaded.files:
                key = "features"
            else:
                matrices = [k for k in loaded.files if _member(loaded, k, path).ndim == 2]
                if len(matrices) != 1:
                    raise InputError(f"{str(path)!r} holds several arrays; name one as {path}:KEY "
                                     f"(2-D arrays: {', '.join(matrices) or 'none'})")
                key = matrices[0]
        if key not in loaded.files:
            raise InputError(f"{str(path)!r} has no array {key!r}; it has: {', '.join(loaded.files)}")
        X = check_embeddings(_member(loaded, key, path), name=f"{path}:{key}")
        beside = {k: _member(loaded, k, path) for k in ("ids", "pixels", "model") if k in loaded.files}
    ids = _ids(beside["ids"], len(X), f"{path}:ids") if "ids" in beside else None
    pixels = beside.get("pixels")
    if pixels is not None and (pixels.shape != (len(X),) or pixels.dtype.kind not in "iu" or (pixels < 0).any()):
        raise InputError(f"{path}:pixels must be one non-negative integer per row, shape ({len(X)},); "
                         f"got {pixels.dtype} {pixels.shape}")
    model = beside.get("model")
    if model is not None and (model.shape != () or model.dtype.kind != "U" or not str(model)):
        raise InputError(f"{path}:model must be one non-empty string (the embedding model's id); "
                         f"got {model.dtype} {model.shape}")
    return Embeddings(X, ids, None if model is None else str(model), pixels)


def _member(npz: np.lib.npyio.NpzFile, key: str, path: Path) -> np.ndarray:
    """One array of an .npz, or an InputError naming it (pickled objects, a bad CRC, a damaged member)."""
    try:
        return npz[key]
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise InputError(f"{path}:{key} is an object (pickled) array, which semzip does not load: "
                             "store strings as a unicode array (np.array(ids, dtype=str))") from None
        raise InputError(f"cannot read {path}:{key} ({exc})") from None
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise InputError(f"cannot read {path}:{key}: the .npz is damaged ({type(exc).__name__}: {exc})") from None


def _ids(arr: np.ndarray, n: int, where: str) -> list[str]:
    """Ids stored beside embeddings: one string per row (bytes are read as UTF-8), else an error."""
    if arr.shape != (n,):
        raise InputError(f"{where}: ids must be one per row, shape ({n},), got {arr.shape}")
    if arr.dtype.kind == "S":
        try:
            return [bytes(i).decode("utf-8") for i in arr]
        except UnicodeDecodeError as exc:
            raise InputError(f"{where}: bytes ids that are not UTF-8 ({exc})") from None
    if arr.dtype.kind not in "Uiu":
        raise InputError(f"{where}: ids must be strings or integers, got dtype {arr.dtype}")
    ids = [str(i) for i in arr]
    for row, i in enumerate(ids):
        try:
            i.encode("utf-8")
        except UnicodeEncodeError:
            raise InputError(f"{where}: id at row {row} ({i!r}) is not valid Unicode text (a lone surrogate)") from None
    return ids


def read_all(sources: Sequence[str]) -> Embeddings:
    """Several embedding files as one (rows concatenated in order): ids kept when every file has
    them, pixels when every file has them, and the model all of them record (files recording
    different models cannot be mixed)."""
    parts = [read_embeddings(s) for s in sources]
    widths = {p.features.shape[1] for p in parts}
    if len(widths) > 1:
        raise InputError(f"inputs have different widths {sorted(widths)}; they cannot be concatenated")
    models = {p.model for p in parts if p.model is not None}
    if len(models) > 1:
        raise InputError(f"inputs were embedded with different models ({', '.join(sorted(models))}); "
                         "their vectors are not comparable")
    with_ids = [p.ids is not None for p in parts]
    if any(with_ids) and not all(with_ids):
        missing = [s for s, has in zip(sources, with_ids) if not has]
        raise InputError(f"some inputs have ids and {', '.join(missing)} do not: give every input ids, "
                         "or name the items with --ids FILE / --id-prefix P")
    X = parts[0].features if len(parts) == 1 else np.concatenate([p.features for p in parts])
    ids = [i for p in parts for i in p.ids or ()] if all(with_ids) else None
    pixels = np.concatenate([p.pixels for p in parts]) if all(p.pixels is not None for p in parts) else None
    return Embeddings(X, ids, models.pop() if models else None, pixels)


def recorded_model(given: str | None, recorded: str | None, what: str) -> str | None:
    """The model id of embeddings read from `what`: the one they record, else the one given; a
    given id that contradicts the recorded one is refused (their vectors would be mislabelled)."""
    if given and recorded and given != recorded:
        raise InputError(f"{what} was embedded with {recorded}, not {given}; drop the model option or fix it")
    return given or recorded


def item_ids(n: int, ids_file: str | None, prefix: str | None, found: list[str] | None) -> list[str] | None:
    """The ids to store: from --ids FILE (one per line, or a .parquet's id/image_path/url/key column),
    --id-prefix P (P0, P1, ...), or the input's."""
    if ids_file is not None and prefix is not None:
        raise InputError("give --ids FILE or --id-prefix P, not both")
    if prefix is not None:
        return [f"{prefix}{i}" for i in range(n)]
    if ids_file is None:
        return found
    if Path(ids_file).suffix == ".parquet":
        lines = read_parquet_column(Path(ids_file), ID_COLUMNS, "item ids")[1]
    else:
        try:
            lines = Path(ids_file).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"cannot read ids file {ids_file!r} ({exc})") from None
    if len(lines) != n:
        raise InputError(f"ids file {ids_file!r} has {len(lines)} lines for {n} items (one id per line)")
    return lines
