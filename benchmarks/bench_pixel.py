"""Counted bits per pixel of JPEG, WebP and AVIF (Pillow) at their lowest qualities on real photos that
ship inside installed packages (scikit-image's wheel, matplotlib's sample data), beside the bpp that
semzip's payload rates would be on the same images.

Rates only: the accuracy side (re-embedding the decoded photos with CLIP) needs CLIP weights, which
this machine cannot download; with weights, run `semzip eval FOLDER --model ... --pixel-codecs ...`.

    python benchmarks/bench_pixel.py [--json out/bench_pixel.json]
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

#: (package, file inside the package's data folder): colour photos; PNGs are losslessly stored sources.
PHOTOS = (("skimage", "data/astronaut.png"), ("skimage", "data/chelsea.png"), ("skimage", "data/coffee.png"),
          ("skimage", "data/motorcycle_left.png"), ("skimage", "data/rocket.jpg"),
          ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg"))
#: Fixed (pre-entropy-coding) bits/image of pq M=8/16/32 K=256 and sign on 512-d CLIP; bench_eval counts the
#: entropy-coded payloads at or a little below these (e.g. 58-64 for M=8).
SEMZIP_BITS = (64, 128, 256, 512)


def photos() -> list[Path]:
    found = []
    for package, rel in PHOTOS:
        spec = importlib.util.find_spec(package)
        if spec is not None and spec.submodule_search_locations:
            path = Path(next(iter(spec.submodule_search_locations))) / rel
            if path.is_file():
                found.append(path)
    if not found:
        sys.exit("no bundled photos found: pip install scikit-image matplotlib")
    return found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--qualities", default="1,5,10,20,30,50")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    from PIL import features
    from rich.console import Console

    from semzip.eval.pixel import pixel_codec_eval
    from semzip.eval.report import print_pixel_rows, write_json

    console = Console(width=120)
    paths = photos()
    codecs = ["jpeg", "webp"] + (["avif"] if features.check("avif") else [])
    rows = pixel_codec_eval(paths, codecs, [int(q) for q in args.qualities.split(",")])
    pixels, n = rows[0]["pixels"], len(paths)
    console.print("photos: " + ", ".join(f"{p.parent.name}/{p.name}" for p in paths), highlight=False)
    print_pixel_rows(rows, console, f"{n} bundled photos, {pixels / n / 1e6:.2f} Mpx/image")
    if "avif" not in codecs:
        console.print("AVIF skipped: PIL.features.check('avif') is False (needs Pillow >= 11.2 with libavif)")
    semzip = [{"payload_bits_per_image": b, "bpp": b * n / pixels} for b in SEMZIP_BITS]
    cheapest = {c: min(r["bpp"] for r in rows if r["family"] == c) for c in codecs}
    for s in semzip:
        s["fraction_of_cheapest"] = {c: s["bpp"] / v for c, v in cheapest.items()}
        console.print(f"semzip at {s['payload_bits_per_image']:>3} fixed bits/image = {s['bpp']:.6f} bpp on these photos: "
                      + ", ".join(f"{100 * f:.3f}% of {c}'s lowest-quality bpp" for c, f in s["fraction_of_cheapest"].items()),
                      highlight=False)
    console.print("Rates only, not at equal accuracy: no CLIP weights here to re-embed the decoded photos.",
                  highlight=False, style="dim")
    if args.json is not None:
        write_json({"photos": [str(p) for p in paths], "pixel_codecs": rows, "semzip": semzip}, args.json)


if __name__ == "__main__":
    main()
