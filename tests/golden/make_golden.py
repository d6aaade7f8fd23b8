"""Regenerate the golden archives. Run only on purpose (a format or bitstream change), then commit.

    python tests/golden/make_golden.py
"""

from pathlib import Path

import numpy as np

from semzip import make_codec, save_codec
from semzip.container import write_archive

HERE = Path(__file__).parent
SPECS = {"f16": "f16", "int8": "int8", "sign": "sign", "pq": "pq:M=8,K=16,opq=1"}


def main() -> None:
    rng = np.random.default_rng(2026)
    train = rng.standard_normal((300, 64)).astype(np.float32)
    items = rng.standard_normal((20, 64)).astype(np.float32)
    train /= np.linalg.norm(train, axis=1, keepdims=True)
    items /= np.linalg.norm(items, axis=1, keepdims=True)
    np.save(HERE / "items.npy", items)
    for name, spec in SPECS.items():
        codec = make_codec(spec).fit(train)
        write_archive(HERE / f"v1_{name}.smz", codec, items, ids=[f"item-{i}" for i in range(20)], block_items=8)
        np.save(HERE / f"v1_{name}.decoded.npy", codec.decode(codec.encode(items), len(items)))
    codec = make_codec(SPECS["pq"]).fit(train)
    save_codec(codec, HERE / "v1_pq_shared.smzc")
    write_archive(HERE / "v1_pq_shared.smz", codec, items, embed_codec=False, pixels=np.arange(20) * 1000 + 1)


if __name__ == "__main__":
    main()
