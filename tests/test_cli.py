"""The CLI end to end through `main(argv)`; every bad input gets one clear line and a non-zero exit."""

import json

import numpy as np
import pytest

from semzip.cli import main
from semzip.container import Archive

from .utils import unit_rows


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """Input files and one fitted codec, made once for the module (tests copy what they change)."""
    t = tmp_path_factory.mktemp("cli")
    np.save(t / "train.npy", unit_rows(400, 64, seed=20))
    np.savez(t / "items.npz", features=unit_rows(50, 64, seed=21), ids=np.array([f"p{i}.jpg" for i in range(50)]))
    np.savez(t / "multi.npz", a=unit_rows(30, 64, seed=22), b=unit_rows(30, 64, seed=23))
    np.save(t / "nan.npy", np.full((3, 64), np.nan, np.float32))
    np.save(t / "empty.npy", np.zeros((0, 64), np.float32))
    np.save(t / "wide.npy", unit_rows(3, 32))
    (t / "garbage.smz").write_bytes(b"hello world, not an archive")
    assert main(["fit", "pq:M=8,K=16,opq=0", str(t / "train.npy"), "-o", str(t / "pq.smzc")]) == 0
    (t / "broken.smzc").write_bytes((t / "pq.smzc").read_bytes()[:-10])
    return t


@pytest.fixture
def files(shared, tmp_path):
    for f in shared.iterdir():
        (tmp_path / f.name).write_bytes(f.read_bytes())
    return tmp_path


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_fit_compress_info_decompress_verify(files, capsys):
    t = files
    assert run(capsys, "fit", "pq:M=8,K=16", t / "train.npy", t / "multi.npz:a", "-o", t / "pq.smzc")[0] == 0
    code, out, _ = run(capsys, "compress", t / "items.npz", "--codec", t / "pq.smzc", "-o", t / "a.smz")
    assert code == 0 and "50 items" in out
    code, out, _ = run(capsys, "info", t / "a.smz", "--json")
    info = json.loads(out)
    assert code == 0
    assert {"items", "dim", "model", "codec", "payload_bits", "total_bits", "bits_per_item"} <= set(info)
    assert info["items"] == 50 and info["dim"] == 64 and info["model"] == "unknown"  # a plain .npz records no model: never a guess
    assert info["total_bits"] == 8 * (t / "a.smz").stat().st_size
    assert info["bits_per_item"] == info["total_bits"] / 50
    assert run(capsys, "decompress", t / "a.smz", "-o", t / "out.npy")[0] == 0
    out_arr = np.load(t / "out.npy")
    assert out_arr.shape == (50, 64) and out_arr.dtype == np.float32
    code, out, _ = run(capsys, "verify", t / "a.smz")
    assert code == 0 and out.startswith("ok")


def test_compress_with_a_spec_fits_on_the_input(files, capsys):
    t = files
    code, out, _ = run(capsys, "compress", t / "multi.npz:b", "--codec", "sign", "-o", t / "s.smz", "--model", "ViT-L-14:openai")
    assert code == 0
    info = json.loads(run(capsys, "info", t / "s.smz", "--json")[1])
    assert info["codec"] == "sign" and info["model"] == "ViT-L-14:openai" and info["codec_bits"] > 0


def test_shared_codec_and_append(files, capsys):
    t = files
    assert run(capsys, "compress", t / "multi.npz:a", "--codec", t / "pq.smzc", "--shared", "-o", t / "a.smz")[0] == 0
    code, _, err = run(capsys, "decompress", t / "a.smz", "-o", t / "x.npy")
    assert code == 4 and "pass the codec file" in err
    assert run(capsys, "append", t / "a.smz", t / "multi.npz:b", "--codec", t / "pq.smzc")[0] == 0
    assert run(capsys, "decompress", t / "a.smz", "-o", t / "x.npy", "--codec", t / "pq.smzc")[0] == 0
    assert np.load(t / "x.npy").shape == (60, 64)
    run(capsys, "fit", "pq:M=8,K=16,opq=0", t / "multi.npz:b", "-o", t / "other.smzc")
    code, _, err = run(capsys, "decompress", t / "a.smz", "-o", t / "x.npy", "--codec", t / "other.smzc")
    assert code == 4 and "wrong codec" in err


@pytest.mark.parametrize("argv, code, message", [
    (["fit", "pq:M=8,K=16", "{t}/nan.npy", "-o", "{t}/c.smzc"], 2, "non-finite value"),
    (["fit", "pq:M=8,K=16", "{t}/empty.npy", "-o", "{t}/c.smzc"], 2, "empty input"),
    (["fit", "wat:x=1", "{t}/train.npy", "-o", "{t}/c.smzc"], 2, "unknown codec 'wat'"),
    (["fit", "pq:M=8,K=16", "{t}/missing.npy", "-o", "{t}/c.smzc"], 2, "no such embedding file"),
    (["fit", "pq:M=8,K=16", "{t}/multi.npz", "-o", "{t}/c.smzc"], 2, "name one as"),
    (["fit", "pq:M=8,K=16", "{t}/multi.npz:zz", "-o", "{t}/c.smzc"], 2, "has no array 'zz'"),
    (["compress", "{t}/wide.npy", "--codec", "{t}/pq.smzc", "-o", "{t}/a.smz"], 2, "width 32 does not match"),
    (["compress", "{t}/items.npz", "--codec", "{t}/pq.smzc", "-o", "{t}/nodir/a.smz"], 5, "cannot write"),
    (["compress", "{t}/items.npz", "--codec", "pq:M=8,K=1000", "-o", "{t}/a.smz"], 2, "power of two"),
    (["info", "{t}/garbage.smz"], 3, "not a semzip archive"),
    (["info", "{t}/nothere.smz"], 2, "no such archive"),
    (["decompress", "{t}/pq.smzc", "-o", "{t}/x.npy"], 3, "not a semzip archive"),
    (["compress", "{t}/items.npz", "--codec", "{t}/broken.smzc", "-o", "{t}/a.smz"], 3, "codec file"),
    # declared option rules (cli/_app.option_rules), checked before any work
    (["compress", "{t}/items.npz", "--ray", "--bits", "32", "-o", "{t}/out"], 2, "--ray and --bits cannot be given together"),
    (["compress", "{t}/items.npz", "--ray", "-o", "{t}/out"], 2, "--ray needs --codec"),
    (["compress", "{t}/items.npz", "--ray", "--bits", "0", "-o", "{t}/out"], 2, "--ray and --bits cannot"),
    (["classify", "{t}/a.smz"], 2, "give exactly one of --labels, --text-embeddings (got none)"),
    (["classify", "{t}/a.smz", "--text-embeddings", "{t}/items.npz"], 2, "--text-embeddings needs --labels-from"),
    (["search", "{t}/a.smz", "--like", "0", "--nprobe", "4", "--rerank", "10"], 2, "--nprobe and --rerank cannot"),
    (["eval", "{t}/items.npz", "--codecs", "f16", "--weights", "{t}/w.pt"], 2, "--weights needs --model"),
])
def test_bad_input_exit_codes(files, capsys, argv, code, message):
    t = files
    got, _, err = run(capsys, *[a.format(t=t) for a in argv])
    assert got == code
    assert message in err
    assert len(err.strip().splitlines()) == 1, err


def test_damaged_archive_fails_verify_and_existing_output_survives(files, capsys):
    t = files
    run(capsys, "compress", t / "items.npz", "--codec", t / "pq.smzc", "-o", t / "a.smz")
    raw = bytearray((t / "a.smz").read_bytes())
    raw[-300] ^= 0x10
    (t / "bad.smz").write_bytes(bytes(raw))
    code, _, err = run(capsys, "verify", t / "bad.smz")
    assert code == 3 and "checksum mismatch" in err
    before = (t / "a.smz").read_bytes()
    code, _, _ = run(capsys, "compress", t / "nan.npy", "--codec", t / "pq.smzc", "-o", t / "a.smz")
    assert code == 2 and (t / "a.smz").read_bytes() == before


def test_help_teaches(capsys):
    code, out, _ = run(capsys, "--help")
    assert code == 0 and "compress" in out and "fit" in out
    code, out, _ = run(capsys, "compress", "--help")
    assert code == 0 and "--shared" in out
    assert run(capsys, "nonsense")[0] == 2


def test_codecs_lists_the_registry(capsys):
    code, out, _ = run(capsys, "codecs", "--json")
    names = {row["name"] for row in json.loads(out)}
    assert code == 0 and {"f16", "int8", "sign", "pq"} <= names


def test_compress_keeps_the_model_and_pixels_recorded_by_embed(tmp_path, capsys):
    np.savez(tmp_path / "e.npz", features=unit_rows(6, 64), ids=np.array([f"{i}.jpg" for i in range(6)]),
             pixels=np.full(6, 1000), model=np.array("ViT-L-14:openai"))
    assert run(capsys, "compress", tmp_path / "e.npz", "--codec", "int8", "-o", tmp_path / "a.smz")[0] == 0
    info = json.loads(run(capsys, "info", tmp_path / "a.smz", "--json")[1])
    assert info["model"] == "ViT-L-14:openai" and info["pixels"] == 6000
    code, _, err = run(capsys, "compress", tmp_path / "e.npz", "--codec", "int8", "-o", tmp_path / "b.smz",
                       "--model", "ViT-B-32:openai")
    assert code == 2 and "was embedded with ViT-L-14:openai" in err


def test_version(capsys):
    from semzip import __version__

    code, out, _ = run(capsys, "--version")
    assert code == 0 and out.strip() == f"semzip {__version__}"


def test_python_dash_m(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    from semzip import __version__

    src = str(Path(__file__).resolve().parents[1] / "src")
    env = os.environ | {"PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    ok = subprocess.run([sys.executable, "-m", "semzip", "--version"], capture_output=True, text=True, env=env)
    assert ok.returncode == 0 and ok.stdout.strip() == f"semzip {__version__}"
    bad = subprocess.run([sys.executable, "-m", "semzip", "info", str(tmp_path / "missing.smz")],
                         capture_output=True, text=True, env=env)
    assert bad.returncode != 0 and "missing.smz" in bad.stderr


def test_compress_to_a_budget_chooses_and_explains(files, capsys):
    """--bits alone: candidates are fitted and written, the best within the budget is kept and said why."""
    t = files
    code, out, _ = run(capsys, "compress", t / "train.npy", "--bits", "300", "-o", t / "b.smz")
    assert code == 0 and "codecs tried at 300 bits per item" in out and "chose " in out
    with Archive.open(t / "b.smz") as arc:
        info = arc.info()
        assert info["bits_per_item"] <= 300 and info["codec_embedded"]
        assert arc.codec_spec.split(":")[0] in out.split("chose ")[1]
    assert run(capsys, "compress", t / "train.npy", "--bits", "0.5", "-o", t / "c.smz")[0] == 2
    assert not (t / "c.smz").exists()
    code, _, err = run(capsys, "compress", t / "train.npy", "--bits", "32", "--codec", "f16", "-o", t / "c.smz")
    assert code == 2 and "over the budget of 32" in err and not (t / "c.smz").exists()  # with a codec: a payload cap


def test_compress_says_when_the_codec_costs_more_than_the_codes(files, capsys):
    t = files
    code, out, _ = run(capsys, "compress", t / "items.npz", "--codec", "pq:M=8,K=16,opq=0", "-o", t / "own.smz")
    assert code == 0 and "the embedded codec is" in out and "--shared" in out and "--bits B, no --codec" in out


def test_ids_travel_through_compress_ls_decompress_and_merge(files, capsys):
    """Plain arrays get ids from --id-prefix or --ids; ls lists them; decompress to .npz keeps them."""
    t = files
    assert run(capsys, "compress", t / "train.npy", t / "train.npy", "--codec", "f16", "--id-prefix", "a/",
               "-o", t / "a.smz")[0] == 0
    (t / "ids.txt").write_text("\n".join(f"b{i}" for i in range(50)) + "\n")
    assert run(capsys, "compress", t / "items.npz", "--codec", "f16", "--ids", t / "ids.txt", "-o", t / "b.smz")[0] == 0
    code, out, _ = run(capsys, "ls", t / "a.smz", "--json")
    assert code == 0 and json.loads(out) == [f"a/{i}" for i in range(800)]
    code, out, _ = run(capsys, "ls", t / "b.smz")
    assert out.split() == [f"b{i}" for i in range(50)]
    assert run(capsys, "merge", t / "a.smz", t / "b.smz", "-o", t / "ab.smz")[0] == 0
    assert run(capsys, "decompress", t / "ab.smz", "-o", t / "ab.npz")[0] == 0
    with np.load(t / "ab.npz") as z:
        assert z["features"].shape == (850, 64) and z["ids"].tolist()[798:802] == ["a/798", "a/799", "b0", "b1"]
        assert str(z["model"]) == "unknown"
    code, _, _ = run(capsys, "compress", t / "ab.npz", "--codec", "f16", "-o", t / "again.smz")  # read back
    assert code == 0 and run(capsys, "ls", t / "again.smz")[1].split()[800] == "b0"
    assert run(capsys, "append", t / "b.smz", t / "train.npy", t / "train.npy", "--id-prefix", "c")[0] == 0
    assert run(capsys, "ls", t / "b.smz")[1].split()[49:52] == ["b49", "c0", "c1"]
    code, _, err = run(capsys, "compress", t / "items.npz", "--codec", "f16", "--ids", t / "ids.txt",
                       "--id-prefix", "x", "-o", t / "c.smz")
    assert code == 2 and "not both" in err
    (t / "short.txt").write_text("x\ny\n")
    code, _, err = run(capsys, "compress", t / "items.npz", "--codec", "f16", "--ids", t / "short.txt", "-o", t / "c.smz")
    assert code == 2 and "has 2 lines for 50 items" in err


def test_writing_over_an_input_is_refused(files, capsys):
    t = files
    assert run(capsys, "compress", t / "train.npy", "--codec", "f16", "-o", t / "a.smz")[0] == 0
    before = (t / "train.npy").read_bytes()
    code, _, err = run(capsys, "compress", t / "train.npy", "--codec", "f16", "-o", t / "train.npy")
    assert code == 2 and "is also an input" in err and (t / "train.npy").read_bytes() == before
    code, _, err = run(capsys, "decompress", t / "a.smz", "-o", t / "a.smz")
    assert code == 2 and "is the archive itself" in err


def test_bad_ids_beside_embeddings_are_refused(files, capsys):
    t = files
    np.savez(t / "two_d.npz", features=unit_rows(4, 64), ids=np.array([["a", "b"]] * 4))
    np.savez(t / "short.npz", features=unit_rows(4, 64), ids=np.array(["a", "b"]))
    np.savez(t / "bytes.npz", features=unit_rows(2, 64), ids=np.array([b"x1", b"x2"]))
    for name in ("two_d", "short"):
        code, _, err = run(capsys, "compress", t / f"{name}.npz", "--codec", "f16", "-o", t / "o.smz")
        assert code == 2 and "ids must be one per row" in err
    assert run(capsys, "compress", t / "bytes.npz", "--codec", "f16", "-o", t / "o.smz")[0] == 0
    assert run(capsys, "ls", t / "o.smz")[1].split() == ["x1", "x2"]


def test_hostile_npz_inputs_are_refused_naming_the_member(files, capsys):
    t = files
    X = unit_rows(6, 64)
    np.savez(t / "pickled.npz", features=X, ids=np.array(["a", 1, None, "b", "c", "d"], dtype=object))
    np.savez(t / "surrogate.npz", features=X, ids=np.array(["a\ud800", "b", "c", "d", "e", "f"]))
    np.savez(t / "pixels.npz", features=X, pixels=np.array([-1, 2, 3, 4, 5, 6]))
    np.savez(t / "model.npz", features=X, model=np.array([1, 2]))
    np.savez(t / "good.npz", features=X)
    raw = bytearray((t / "good.npz").read_bytes())
    raw[raw.index(b"\x93NUMPY") + 200] ^= 0xFF  # inside the stored member: its CRC no longer matches
    (t / "crc.npz").write_bytes(bytes(raw))
    np.savez_compressed(t / "deflated.npz", features=X)
    raw = bytearray((t / "deflated.npz").read_bytes())
    raw[60:90] = bytes(30)  # the deflate stream itself
    (t / "deflated.npz").write_bytes(bytes(raw))
    cases = {"pickled": "object (pickled) array", "surrogate": "lone surrogate", "pixels": "non-negative integer",
             "model": "one non-empty string", "crc": "damaged", "deflated": "damaged"}
    for name, message in cases.items():
        code, _, err = run(capsys, "compress", t / f"{name}.npz", "--codec", "f16", "-o", t / "o.smz")
        assert code == 2 and message in err and "Traceback" not in err, (name, err)
        assert not (t / "o.smz").exists()


def test_one_json_convention(files, capsys):
    """--json prints JSON alone on stdout for every command that reports something."""
    t = files
    code, out, _ = run(capsys, "fit", "pq:M=8,K=16,opq=0", t / "train.npy", "-o", t / "p.smzc", "--json")
    assert code == 0 and json.loads(out)["spec"] == "pq:M=8,K=16,opq=0"
    code, out, _ = run(capsys, "compress", t / "items.npz", "--codec", t / "p.smzc", "-o", t / "a.smz", "--json")
    assert code == 0 and json.loads(out)["items"] == 50
    code, out, _ = run(capsys, "append", t / "a.smz", t / "items.npz", "--id-prefix", "n", "--json")
    assert code == 0 and json.loads(out)["items"] == 100
    code, out, _ = run(capsys, "verify", t / "a.smz", "--json")
    assert code == 0 and json.loads(out)["ok"] is True
    data = bytearray((t / "a.smz").read_bytes())
    data[-40] ^= 0xFF
    (t / "bad.smz").write_bytes(bytes(data))
    code, out, _ = run(capsys, "verify", t / "bad.smz", "--json")
    assert code == 3 and json.loads(out)["ok"] is False and json.loads(out)["problems"]
    code, out, _ = run(capsys, "compress", t / "train.npy", "--bits", "300", "-o", t / "b.smz", "--json")
    assert code == 0 and json.loads(out)["chosen"] and json.loads(out)["bits_per_item"] <= 300


def test_help_shows_no_python_type_labels(capsys):
    for command in ("compress", "search", "eval", "fit"):
        assert main([command, "--help"]) == 0
        text = capsys.readouterr().out
        assert "<bool>" not in text and "<list[" not in text and "<str>" not in text, command


def test_codecs_and_info_describe_every_parameter_and_codec_files(files, capsys):
    code, out, _ = run(capsys, "codecs", "--json")
    rows = {r["name"]: r for r in json.loads(out)}
    assert code == 0 and set(rows) == {"bq", "coarse", "f16", "int8", "sign", "pq", "pqvae", "rq", "smic", "stack", "transform"}
    for r in rows.values():
        assert r["summary"].endswith(".") and all(p["meaning"] for p in r["params"].values()), r["name"]
    assert rows["pqvae"]["params"]["coarse"]["default"] == 0
    code, out, _ = run(capsys, "info", files / "pq.smzc", "--json")
    info = json.loads(out)
    assert code == 0 and info["kind"] == "codec" and info["codec"] == "pq:M=8,K=16,opq=0" and info["dim"] == 64


def test_images_and_embeddings_are_told_apart(files, capsys, tmp_path):
    (tmp_path / "a.png").write_bytes(b"\x89PNG not really")
    code, _, err = run(capsys, "fit", "f16", tmp_path / "a.png", "-o", tmp_path / "c.smzc")
    assert code == 2 and "is not an embedding file" in err
    code, _, err = run(capsys, "compress", tmp_path / "a.png", files / "train.npy", "--codec", "f16", "-o", tmp_path / "x.smz")
    assert code == 2 and "not both" in err


def test_demo_counts_every_bit_and_keeps_its_promises(capsys, tmp_path):
    code, out, _ = run(capsys, "demo", "--json", "--json-out", tmp_path / "d.json")
    result = json.loads(out)
    assert code == 0 and json.loads((tmp_path / "d.json").read_text()) == result
    collection, shared = result["collection"], result["shared"]
    assert collection[0]["i2t@1"] == 0.552 and collection[0]["t2i@1"] == 0.506  # the data's own uncompressed figures
    assert [r["codec"] for r in collection[1:3]] == ["smic:bits=128", "smic:bits=256"]
    assert collection[1]["bits_per_image"] <= 128 and collection[2]["bits_per_image"] <= 256
    assert collection[4]["codec"].startswith("--bits 1024") and collection[4]["bits_per_image"] <= 1024
    assert collection[3]["codec_bits_per_image"] > collection[3]["payload_bits_per_image"]  # the per-item codec's file
    assert [r["codec"] for r in shared] == ["float32", "int8", "sign", "pq:M=64,K=16,opq=0", "pq:M=32,K=16,opq=0"]
