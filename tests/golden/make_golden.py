"""Regenerate golden files. Run only on purpose (a format or bitstream change), then commit.

    python tests/golden/make_golden.py --derived NAME ...   # decoded floats and codes of the existing
                                                          # archive (after a deliberate decoder change)
    python tests/golden/make_golden.py NAME ...             # a new golden: codec, archive and all

Each golden NAME has v1_NAME.smz (the archive, never rewritten once shipped), v1_NAME.codes.npz (each
block's codes, `b{block}_{key}`) and v1_NAME.decoded.npy (the decoded float32 items, bit-exact on every
machine since decoders are deterministic by design). Entropy-coded codecs also have v1_NAME.ans.bin and
v1_NAME.ans.npz: the codes of the item that packs smallest, `ANS_REPEAT` times, and their ANS-coded
bytes, which pin constriction's quantisation of the stored frequency tables for each codec.
"""

import argparse
from pathlib import Path

import numpy as np

from semzip import make_codec, save_codec
from semzip.container import Archive, write_archive

HERE = Path(__file__).parent
SPECS = {
    "f16": "f16",
    "int8": "int8",
    "sign": "sign",
    "pq": "pq:M=8,K=16,opq=1",
    "smic": "smic:atoms=32,k=3,coef=3,dbits=4,bits=0.0,cos=0.0",
    "pqvae": "pqvae:dim=8,K=16,grid=2,C=16,H=16,blocks=1,coarse=3,bits=96",
    "rq": "rq:M=6,K=16,beam=4",
    "bq": "bq:D=24,b=2,rotate=1",
    "coarse": "coarse:bits=4",
    "transform": "transform:bits=48",
    "stack": "coarse:bits=3+pq:M=8,K=16,opq=0+transform:bits=40",
}
#: Progressive codecs' goldens are written to a budget (bits per item), so items keep different stage counts.
BUDGETS = {"rq": 30.0}
#: The first goldens code random unit vectors; later ones clustered vectors, so that their index
#: statistics are skewed and blocks are ANS-coded (pinning constriction's quantised tables too).
ITEMS = {name: "items.npy" for name in ("f16", "int8", "sign", "pq")} | {
    name: "items_clustered.npy" for name in ("smic", "pqvae", "rq", "bq", "coarse", "transform", "stack")}

#: Entropy-coded codecs and the item count of their ANS golden.
ANS_GOLDENS, ANS_REPEAT = ("pq", "smic", "pqvae", "rq", "coarse", "transform", "stack"), 64
#: Where the (first) symbol stream's mode word sits in a block payload (rq's layout word comes
#: first, a stack's stage lengths).
MODE_AT = {"rq": 4, "stack": 8}


def repeated(codes: dict[str, np.ndarray], i: int) -> dict[str, np.ndarray]:
    """Item i's codes, ANS_REPEAT times."""
    return {key: np.repeat(value[i : i + 1], ANS_REPEAT, axis=0) for key, value in codes.items()}


def training_data(items_file: str) -> tuple[np.ndarray, np.ndarray]:
    """(train, items) unit vectors, 64-d, of the kind `items_file` names."""
    rng = np.random.default_rng(2026)
    if items_file == "items.npy":
        train = rng.standard_normal((300, 64)).astype(np.float32)
        items = rng.standard_normal((20, 64)).astype(np.float32)
    else:
        centers = rng.standard_normal((6, 64))
        train = (centers[rng.integers(6, size=300)] + 0.6 * rng.standard_normal((300, 64))).astype(np.float32)
        items = (centers[rng.integers(6, size=20)] + 0.6 * rng.standard_normal((20, 64))).astype(np.float32)
    return train / np.linalg.norm(train, axis=1, keepdims=True), items / np.linalg.norm(items, axis=1, keepdims=True)


def write_derived(name: str) -> None:
    """Decoded floats and per-block codes of the existing v1_NAME.smz."""
    with Archive.open(HERE / f"v1_{name}.smz") as arc:
        np.save(HERE / f"v1_{name}.decoded.npy", arc.decode())
        codes = {}
        for b in range(len(arc.index)):
            block = arc.codec.unpack(arc.block_payload(b), int(arc.index[b]["items"]))
            codes |= {f"b{b}_{key}": value for key, value in block.items()}
        np.savez(HERE / f"v1_{name}.codes.npz", **codes)
        if name in ANS_GOLDENS:
            first = arc.codec.unpack(arc.block_payload(0), int(arc.index[0]["items"]))
            runs = [repeated(first, i) for i in range(int(arc.index[0]["items"]))]
            best = min(runs, key=lambda run: len(arc.codec.pack(run)))
            data = arc.codec.pack(best)
            at = MODE_AT.get(name, 0)
            assert data[at : at + 4] == b"\0\0\0\0", f"{name}: the repeated codes were not ANS-coded"
            (HERE / f"v1_{name}.ans.bin").write_bytes(data)
            np.savez(HERE / f"v1_{name}.ans.npz", **best)


def write_new(name: str) -> None:
    train, items = training_data(ITEMS[name])
    np.save(HERE / ITEMS[name], items)
    codec = make_codec(SPECS[name]).fit(train)
    write_archive(HERE / f"v1_{name}.smz", codec, items, ids=[f"item-{i}" for i in range(20)], block_items=8,
                  budget_bits=BUDGETS.get(name))
    if name == "pq":
        save_codec(codec, HERE / "v1_pq_shared.smzc")
        write_archive(HERE / "v1_pq_shared.smz", codec, items, embed_codec=False, pixels=np.arange(20) * 1000 + 1)
    write_derived(name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="+", choices=sorted(SPECS))
    parser.add_argument("--derived", action="store_true", help="only the decoded floats and codes")
    args = parser.parse_args()
    for name in args.names:
        (write_derived if args.derived else write_new)(name)


if __name__ == "__main__":
    main()
