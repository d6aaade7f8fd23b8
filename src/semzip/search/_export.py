"""An archive as a faiss index, so tools built on faiss (autofaiss, clip-retrieval) can search it.

Codes are reused where faiss has the same layout: `pq` (8-bit or 4-bit indices, with its OPQ
rotation as an `OPQMatrix` pre-transform) becomes an `IndexPQ`, `f16` an `IndexScalarQuantizer`
(QT_fp16), both with inner-product metric. Other codecs have no faiss equivalent; their decoded
vectors go into an `IndexFlatIP` (32 bits per dimension: larger than the archive), and the result
says so. Row i of the index is item i of the archive (`semzip ls` lists the ids).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .._atomic import atomic_writer
from ..codecs.pq import PQCodec
from ..container import ArchiveLike


def export_faiss(archive: ArchiveLike, path: str | Path) -> dict[str, Any]:
    """Write `archive` as a faiss index file at `path` (atomically); returns what was written."""
    import faiss

    codec = archive.codec
    name, d, n = codec.name, archive.dim, archive.items
    reused = name in ("pq", "f16")
    if isinstance(codec, PQCodec):
        nbits = pq_bits(codec)
        index = faiss.IndexPQ(d, codec.M, nbits, faiss.METRIC_INNER_PRODUCT)
        copy_pq(codec, index)
        _add_codes(index, archive, lambda c: pack_indices(c["codes"], nbits))
        if codec.rotation_ is not None:
            opq = faiss.OPQMatrix(d, codec.M)
            faiss.copy_array_to_vector(np.ascontiguousarray(codec.rotation_, dtype=np.float32).ravel(), opq.A)
            opq.is_trained = True
            index = faiss.IndexPreTransform(opq, index)
    elif name == "f16":
        index = faiss.IndexScalarQuantizer(d, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT)
        index.is_trained = True
        _add_codes(index, archive, lambda c: np.ascontiguousarray(c["values"].astype("<f2")).view(np.uint8))
    else:
        index = faiss.IndexFlatIP(d)
        for start, codes in archive.iter_codes():
            index.add(np.ascontiguousarray(codec.reconstruct(codes), dtype=np.float32))
    data = faiss.serialize_index(index).tobytes()
    with atomic_writer(Path(path)) as fh:
        fh.write(data)
    kind = type(index).__name__ + (f"({type(faiss.downcast_index(index.index)).__name__})"
                                   if isinstance(index, faiss.IndexPreTransform) else "")
    return {"path": str(path), "index": kind, "items": n, "dim": d, "codes_reused": reused, "bytes": len(data),
            "note": "codes copied, no re-encoding" if reused else
            f"{name} has no faiss layout: decoded vectors in a flat index (32 bits per dimension)"}


def pq_bits(codec: PQCodec) -> int:
    """Bits per sub-quantiser index of a pq codec (K is a power of two)."""
    return int(codec.K).bit_length() - 1


def copy_pq(codec: PQCodec, index: Any) -> None:
    """A pq codec's centroids into a faiss index's ProductQuantizer (`index.pq`), marked trained."""
    import faiss

    faiss.copy_array_to_vector(np.ascontiguousarray(codec.centroids_, dtype=np.float32).ravel(), index.pq.centroids)
    index.is_trained = True


def _add_codes(index: Any, archive: ArchiveLike, to_bytes: Any) -> None:
    """Append every block's codes, as faiss code bytes, to a flat-coded index."""
    import faiss

    parts = [to_bytes(codes).reshape(len(next(iter(codes.values()))), -1) for _, codes in archive.iter_codes()]
    codes = np.ascontiguousarray(np.concatenate(parts), dtype=np.uint8)
    faiss.copy_array_to_vector(codes.ravel(), index.codes)
    index.ntotal = len(codes)


def pack_indices(idx: np.ndarray, nbits: int) -> np.ndarray:
    """PQ indices (n, M) as faiss packs them: one bit stream per vector, index m in bits
    [m * nbits, (m + 1) * nbits), least significant bit first (one byte each when nbits is 8)."""
    bits = (idx.astype(np.uint32)[:, :, None] >> np.arange(nbits, dtype=np.uint32)) & 1
    return np.packbits(bits.reshape(len(idx), -1).astype(np.uint8), axis=1, bitorder="little")
