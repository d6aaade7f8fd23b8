"""Captions: ClipCap-style mappers and GPT-2 (tiny, randomly initialised: the real architectures), the
published checkpoint layout, training, the CLI, and a clear error offline."""

import json

import numpy as np
import pytest

pytest.importorskip("transformers")
import torch  # noqa: E402

from semzip import InputError, make_codec  # noqa: E402
from semzip._errors import ModelError  # noqa: E402
from semzip.cli import main  # noqa: E402
from semzip.container import write_archive  # noqa: E402
from semzip.decode.caption import Captioner, fit_captioner, read_captions  # noqa: E402

from .utils import unit_rows  # noqa: E402
from .tiny_models import tiny_gpt2  # noqa: E402

CAPTIONS = ["a dog on a beach.", "two cats asleep.", "a red car.", "a plate of food.", "a man riding a horse.",
            "snow on mountains."]


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory):
    return tiny_gpt2(tmp_path_factory.mktemp("gpt2"))


@pytest.fixture(scope="module")
def trained(gpt2):
    """Captioners of both layouts that learned six captions of six embeddings."""
    X = unit_rows(6, 64, seed=3)
    caps = {layout: fit_captioner(X, CAPTIONS, gpt2=str(gpt2), layout=layout, prefix_length=4, clip_length=4,
                                  num_layers=2, finetune_gpt2=True, epochs=300, batch_size=6, lr=3e-3, model="m:a")
            for layout in ("mlp", "transformer")}
    return X, caps


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["mlp", "transformer"])
def test_a_trained_captioner_says_its_captions_and_survives_save_load(trained, layout, tmp_path):
    X, caps = trained
    cap = caps[layout]
    losses = cap.config["fit"]["loss_per_epoch"]
    assert losses[-1] < 0.2 * losses[0]
    greedy = cap.caption(X)
    assert sum(g == c for g, c in zip(greedy, CAPTIONS)) >= 5, greedy
    assert sum(b == c for b, c in zip(cap.caption(X, beam=3), CAPTIONS)) >= 5
    assert cap.caption(X[:4], batch_size=3) == greedy[:4]  # batching does not change captions
    cap.save(tmp_path / "cap")
    cap.save(tmp_path / "cap")  # replacing a captioner folder is allowed
    again = Captioner.load(tmp_path / "cap")
    assert again.caption(X) == greedy and again.config["layout"] == layout
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "keep.txt").write_text("mine")
    with pytest.raises(InputError, match="not a captioner folder"):
        cap.save(tmp_path / "other")
    assert (tmp_path / "other" / "keep.txt").read_text() == "mine"


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["mlp", "transformer"])
def test_clipcap_checkpoint_layout_loads_and_captions_the_same(trained, gpt2, layout, tmp_path):
    """A state dict laid out like ClipCap's release (clip_project.*, gpt.*, with the attention-mask
    buffers older transformers saved) gives the same captions; its sizes are read from the shapes."""
    X, caps = trained
    cap = caps[layout]
    state = {f"clip_project.{k}": v for k, v in cap.mapper.state_dict().items()}
    state |= {f"gpt.{k}": v for k, v in cap.gpt.state_dict().items()}
    state["gpt.transformer.h.0.attn.bias"] = torch.tril(torch.ones(1, 1, 8, 8))
    torch.save(state, tmp_path / "coco_weights.pt")
    loaded = Captioner.load(tmp_path / "coco_weights.pt", gpt2=str(gpt2))
    assert {k: loaded.config[k] for k in ("layout", "dim", "prefix_length")} == {"layout": layout, "dim": 64, "prefix_length": 4}
    if layout == "transformer":
        assert (loaded.config["clip_length"], loaded.config["num_layers"]) == (4, 2)
    np.testing.assert_array_equal(loaded.prefix(X).detach().numpy(), cap.prefix(X).detach().numpy())
    assert loaded.caption(X) == cap.caption(X)
    assert Captioner.load(tmp_path / "coco_weights.pt", gpt2=str(gpt2), prefix_scale=3.0).config["prefix_scale"] == 3.0
    wrong = {k: v for k, v in state.items() if k.startswith("clip_project.")}
    key = "clip_project.model.2.weight" if layout == "mlp" else "clip_project.prefix_const"
    wrong[key] = torch.zeros(wrong[key].shape[0] + 1, wrong[key].shape[1]) if layout == "mlp" else torch.zeros(4, 48)
    torch.save(wrong, tmp_path / "wrong.pt")
    with pytest.raises(ModelError, match="does not fit a GPT-2 of width 32"):
        Captioner.load(tmp_path / "wrong.pt", gpt2=str(gpt2))
    torch.save({"other.weight": torch.zeros(2)}, tmp_path / "none.pt")
    with pytest.raises(ModelError, match="not a ClipCap checkpoint"):
        Captioner.load(tmp_path / "none.pt", gpt2=str(gpt2))


def test_read_captions_by_order_and_by_id(tmp_path):
    ids = ["a.jpg", "b.jpg", "c.jpg"]
    (tmp_path / "c.txt").write_text("one\ntwo\n\nthree\n")
    assert read_captions(tmp_path / "c.txt", ids, 3) == ([0, 1, 2], ["one", "two", "three"])
    (tmp_path / "c.json").write_text(json.dumps({"c.jpg": ["x", "y"], "a.jpg": "z"}))
    assert read_captions(tmp_path / "c.json", ids, 3) == ([2, 2, 0], ["x", "y", "z"])
    (tmp_path / "c.csv").write_text("id,caption\nb.jpg,hello\nb.jpg,again\n")
    assert read_captions(tmp_path / "c.csv", ids, 3) == ([1, 1], ["hello", "again"])
    (tmp_path / "bad.json").write_text(json.dumps({"d.jpg": "?"}))
    (tmp_path / "short.txt").write_text("one\n")
    (tmp_path / "nocol.csv").write_text("id,text\na.jpg,x\n")
    (tmp_path / "empty.json").write_text(json.dumps(["x", "", "y"]))
    for name, match in (("bad.json", "d.jpg"), ("short.txt", "1 captions for 3"), ("nocol.csv", "caption` column"),
                        ("empty.json", "non-empty string"), ("missing.txt", "cannot read")):
        with pytest.raises(InputError, match=match):
            read_captions(tmp_path / name, ids, 3)
    with pytest.raises(InputError, match="no ids"):
        read_captions(tmp_path / "c.json", None, 3)


@pytest.mark.slow
def test_cli_fit_captioner_then_caption_an_archive(gpt2, tmp_path, capsys):
    X = unit_rows(6, 64, seed=3)
    ids = [f"img{i}.jpg" for i in range(6)]
    np.savez(tmp_path / "emb.npz", features=X, ids=np.array(ids), model=np.array("m:a"))
    (tmp_path / "caps.csv").write_text("id,caption\n" + "".join(f"{i},{c}\n" for i, c in zip(ids, CAPTIONS)))
    assert main(["fit-captioner", str(tmp_path / "emb.npz"), "--captions", str(tmp_path / "caps.csv"), "-o",
                 str(tmp_path / "cap"), "--gpt2", str(gpt2), "--finetune-gpt2", "--epochs", "300", "--lr", "3e-3",
                 "--batch-size", "6", "--prefix-length", "4", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["model"] == "m:a" and record["fit"]["pairs"] == 6
    write_archive(tmp_path / "a.smz", make_codec("f16").fit(X), X, ids=ids, model="m:a")
    assert main(["caption", str(tmp_path / "a.smz"), "--captioner", str(tmp_path / "cap"), "-o",
                 str(tmp_path / "out.csv"), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["id"] for r in rows] == ids and sum(r["caption"] == c for r, c in zip(rows, CAPTIONS)) >= 5
    assert (tmp_path / "out.csv").read_text().splitlines()[0] == "id,caption"
    assert main(["caption", str(tmp_path / "a.smz"), "--captioner", str(tmp_path / "cap"), "--id", "img2.jpg",
                 "--json"]) == 0
    assert [r["id"] for r in json.loads(capsys.readouterr().out)] == ["img2.jpg"]
    write_archive(tmp_path / "b.smz", make_codec("f16").fit(X), X, model="m:b")
    assert main(["caption", str(tmp_path / "b.smz"), "--captioner", str(tmp_path / "cap")]) == 2
    assert "trained on m:a embeddings" in capsys.readouterr().err


def test_offline_without_weights_fails_at_once_saying_how_to_get_them(tmp_path, monkeypatch, capsys):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    X = unit_rows(4, 64, seed=1)
    write_archive(tmp_path / "a.smz", make_codec("f16").fit(X), X)
    torch.save({"clip_project.model.0.weight": torch.zeros(2, 64)}, tmp_path / "coco_weights.pt")
    assert main(["caption", str(tmp_path / "a.smz"), "--captioner", str(tmp_path / "coco_weights.pt")]) == 6
    err = capsys.readouterr().err
    assert "HF_HUB_OFFLINE" in err and "hf download gpt2" in err
    assert main(["caption", str(tmp_path / "a.smz"), "--captioner", str(tmp_path / "nothing")]) == 6
    assert "no captioner at" in capsys.readouterr().err
