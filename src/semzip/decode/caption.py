"""Captions from compressed embeddings: ClipCap-style prefix captioning with GPT-2 (transformers).

A mapper (MLP or transformer, `_clipcap`) turns a decoded CLIP embedding into a prefix of GPT-2 input
embeddings; GPT-2 continues it with the caption (greedy or beam search, `transformers.generate`).
`Captioner.load` reads a folder written by `fit_captioner`/`Captioner.save`, or a published ClipCap
checkpoint (`coco_weights.pt`, `transformer_weights.pt`: a state dict of `clip_project.*` and `gpt.*`).
ClipCap's MLP weights were trained on unnormalised CLIP embeddings; semzip decodes unit vectors, so
give such a checkpoint `prefix_scale` (the norm its embeddings had). Needs torch and transformers.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._errors import InputError, ModelError
from .._progress import progress_bar
from ._hub import from_hub, quiet, require

FORMAT = "semzip-captioner"
_CONFIG, _MAPPER, _GPT2 = "captioner.json", "mapper.safetensors", "gpt2"
LAYOUTS = ("mlp", "transformer")


class Captioner:
    """A mapper, GPT-2 and its tokenizer, and how embeddings enter the mapper (`prefix_scale`)."""

    def __init__(self, mapper: Any, gpt: Any, tokenizer: Any, config: dict[str, Any]) -> None:
        self.mapper, self.gpt, self.tokenizer, self.config = mapper, gpt, tokenizer, config
        self.dim = int(config["dim"])

    @property
    def device(self) -> Any:
        return next(self.gpt.parameters()).device

    def to(self, device: str) -> Captioner:
        self.mapper.to(device)
        self.gpt.to(device)
        return self

    def prefix(self, X: Any) -> Any:
        """GPT-2 input embeddings (n, prefix_length, width) of embeddings X (n, dim)."""
        import torch

        x = torch.as_tensor(np.asarray(X, dtype=np.float32), device=self.device)
        return self.mapper(x * float(self.config["prefix_scale"]))

    def caption(self, X: Any, *, beam: int = 1, max_tokens: int = 40, batch_size: int = 32,
                progress: bool = False) -> list[str]:
        """One caption per row of X (decoded CLIP embeddings): greedy when beam is 1, else beam search."""
        import torch

        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != self.dim:
            raise InputError(f"the captioner takes {self.dim}-d embeddings, got shape {X.shape}")
        if beam < 1 or max_tokens < 1 or batch_size < 1:
            raise InputError("beam, max_tokens and batch_size must be at least 1")
        stops = [self.tokenizer.eos_token_id] + [self.tokenizer.encode(s)[0] for s in self.config.get("stop", [])]
        out: list[str] = []
        self.mapper.eval()
        self.gpt.eval()
        with torch.inference_mode(), progress_bar("captioning", total=len(X), enabled=progress) as advance:
            for at in range(0, len(X), batch_size):
                emb = self.prefix(X[at : at + batch_size])
                tokens = self.gpt.generate(
                    inputs_embeds=emb, attention_mask=torch.ones(emb.shape[:2], dtype=torch.long, device=emb.device),
                    max_new_tokens=max_tokens, num_beams=beam, do_sample=False, eos_token_id=stops,
                    pad_token_id=self.tokenizer.eos_token_id)
                out += [t.strip() for t in self.tokenizer.batch_decode(tokens, skip_special_tokens=True)]
                advance(len(emb))
        return out

    def save(self, path: str | Path, *, with_gpt2: bool | None = None) -> None:
        """A folder: captioner.json, mapper.safetensors and gpt2/ (the tokenizer; GPT-2's weights when
        `with_gpt2`, by default when they were fine-tuned or came from a local folder, else only the
        hub id is kept). Written to a temporary folder, then moved into place."""
        from safetensors.torch import save_file

        path = Path(path)
        if path.exists() and not (path / _CONFIG).is_file():
            raise InputError(f"{str(path)!r} exists and is not a captioner folder; not overwriting it")
        config = dict(self.config)
        keep = with_gpt2 if with_gpt2 is not None else config.get("gpt2_local", False)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
        try:
            save_file({k: v.detach().cpu().contiguous() for k, v in self.mapper.state_dict().items()}, tmp / _MAPPER)
            self.tokenizer.save_pretrained(tmp / _GPT2)
            if keep:
                self.gpt.save_pretrained(tmp / _GPT2)
            config["gpt2_local"] = bool(keep)
            (tmp / _CONFIG).write_text(json.dumps(config, indent=2) + "\n")
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            if path.exists():
                os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    @classmethod
    def load(cls, path: str | Path, *, gpt2: str | None = None, prefix_scale: float | None = None,
             device: str = "cpu") -> Captioner:
        """A captioner folder, or a ClipCap checkpoint (.pt/.safetensors; GPT-2 from `gpt2`, default
        the hub's "gpt2", its weights replaced by the checkpoint's `gpt.*` when present)."""
        require("torch", "transformers", "safetensors")
        path = Path(path)
        if (path / _CONFIG).is_file():
            captioner = _load_folder(path, gpt2)
        elif path.is_file():
            captioner = _load_clipcap(path, gpt2 or "gpt2")
        else:
            raise ModelError(f"no captioner at {str(path)!r}: give a folder written by `semzip fit-captioner` "
                             "or a ClipCap checkpoint file (coco_weights.pt)")
        if prefix_scale is not None:
            if not np.isfinite(prefix_scale) or prefix_scale <= 0:
                raise InputError(f"prefix_scale must be a positive number, got {prefix_scale}")
            captioner.config["prefix_scale"] = float(prefix_scale)
        return captioner.to(device)


def _gpt2(name: str, weights: bool = True) -> Any:
    """GPT-2 by hub id or folder; `weights=False` builds it from its config only (weights come later)."""
    import transformers
    from transformers import AutoConfig, GPT2LMHeadModel

    quiet(transformers)
    if weights:
        return from_hub(GPT2LMHeadModel.from_pretrained, name, "GPT-2 weights")
    return GPT2LMHeadModel(from_hub(AutoConfig.from_pretrained, name, "GPT-2 config"))


def _tokenizer(name: str) -> Any:
    from transformers import AutoTokenizer

    return from_hub(AutoTokenizer.from_pretrained, name, "GPT-2 tokenizer")


def _load_folder(path: Path, gpt2: str | None) -> Captioner:
    from safetensors.torch import load_file

    from ._clipcap import make_mapper

    try:
        config = json.loads((path / _CONFIG).read_text())
        if config.get("format") != FORMAT or config.get("version") != 1 or config.get("layout") not in LAYOUTS:
            raise ValueError("not a version-1 semzip captioner")
        state = load_file(path / _MAPPER)
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read the captioner in {str(path)!r} ({exc})") from None
    gpt = _gpt2(gpt2 or (str(path / _GPT2) if config.get("gpt2_local") else config["gpt2"]))
    mapper = make_mapper(config["layout"], config["dim"], gpt.config.n_embd, config["prefix_length"],
                         config["clip_length"], config["num_layers"])
    _load_state(mapper, state, f"the mapper in {path}")
    return Captioner(mapper, gpt, _tokenizer(str(path / _GPT2)), config)


def _load_clipcap(path: Path, gpt2: str) -> Captioner:
    import torch

    from ._clipcap import infer_layout, make_mapper

    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state: Any = load_file(path)
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
        if not isinstance(state, dict):
            raise ValueError("not a state dict")
    except Exception as exc:  # noqa: BLE001 - unpickling refusals, zip errors, bad headers alike
        raise ModelError(f"cannot read ClipCap checkpoint {str(path)!r} ({type(exc).__name__}: {exc})") from None
    mapper_state = {k[len("clip_project."):]: v for k, v in state.items() if k.startswith("clip_project.")}
    gpt_state = {k[len("gpt."):]: v for k, v in state.items() if k.startswith("gpt.")}
    if not mapper_state:
        raise ModelError(f"{str(path)!r} has no clip_project.* tensors: not a ClipCap checkpoint")
    gpt, tokenizer = _gpt2(gpt2, weights=not gpt_state), _tokenizer(gpt2)
    if gpt_state:
        _load_state(gpt, gpt_state, f"the GPT-2 of {path}", ignore=(".attn.bias", ".attn.masked_bias", "lm_head.weight"))
    try:
        sizes = infer_layout(mapper_state, gpt.config.n_embd)
    except ValueError as exc:
        raise ModelError(f"{str(path)!r}: {exc}") from None
    mapper = make_mapper(str(sizes["layout"]), int(sizes["dim"]), gpt.config.n_embd, int(sizes["prefix_length"]),
                         int(sizes["clip_length"]), int(sizes["num_layers"]))
    _load_state(mapper, mapper_state, f"the mapper of {path}")
    config = {"format": FORMAT, "version": 1, **sizes, "prefix_scale": 1.0, "gpt2": gpt2, "model": None,
              "stop": ["."], "source": str(path)}  # ClipCap's captions end at "." (trained without an end token)
    return Captioner(mapper, gpt, tokenizer, config)


def _load_state(module: Any, state: dict, what: str, ignore: Sequence[str] = ()) -> None:
    """Load a state dict strictly, except keys ending in `ignore` (buffers older transformers saved)."""
    missing, unexpected = module.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith(tuple(ignore))]
    unexpected = [k for k in unexpected if not k.endswith(tuple(ignore))]
    if missing or unexpected:
        raise ModelError(f"{what} does not match its layout: missing {missing[:3]}, unexpected {unexpected[:3]}")


def fit_captioner(X: Any, captions: Sequence[str], *, gpt2: str = "gpt2", layout: str = "mlp",
                  prefix_length: int = 10, clip_length: int = 10, num_layers: int = 8,
                  finetune_gpt2: bool = False, epochs: int = 10, batch_size: int = 32, lr: float = 2e-5,
                  max_tokens: int = 40, seed: int = 0, device: str = "cpu", model: str | None = None,
                  progress: bool = False) -> Captioner:
    """Train a mapper (and GPT-2 when `finetune_gpt2`) on (embedding, caption) pairs, row i of X with
    captions[i]: teacher-forced cross-entropy of the caption after the prefix, AdamW with a linear
    warm-up over the first tenth of the steps. `model` is the CLIP model the embeddings came from.

    Size: ClipCap's architecture and training hyper-parameters are keyword-only options with the
    paper's defaults, as `semzip fit-captioner` exposes them."""
    require("torch", "transformers", "safetensors")
    import torch
    from transformers import get_linear_schedule_with_warmup

    from ._clipcap import make_mapper

    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2 or len(X) != len(captions) or not len(X):
        raise InputError(f"give one caption per embedding: {len(captions)} captions for {len(X)} rows")
    if layout not in LAYOUTS:
        raise InputError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    if min(prefix_length, clip_length, num_layers, epochs, batch_size, max_tokens) < 1 or not lr > 0:
        raise InputError("prefix_length, clip_length, num_layers, epochs, batch_size, max_tokens and lr must be positive")
    torch.manual_seed(seed)
    gpt, tokenizer = _gpt2(gpt2), _tokenizer(gpt2)
    mapper = make_mapper(layout, X.shape[1], gpt.config.n_embd, prefix_length, clip_length, num_layers)
    mapper.to(device)
    gpt.to(device)
    end = tokenizer.eos_token or ""
    tokens = [tokenizer.encode(str(c).strip() + end)[:max_tokens] for c in captions]
    params = list(mapper.parameters()) + (list(gpt.parameters()) if finetune_gpt2 else [])
    if not finetune_gpt2:
        gpt.requires_grad_(False)
    opt = torch.optim.AdamW(params, lr=lr)
    steps = epochs * -(-len(X) // batch_size)
    schedule = get_linear_schedule_with_warmup(opt, max(1, steps // 10), steps)
    rng = np.random.default_rng(seed)
    losses = []
    with progress_bar("training captioner", total=steps, enabled=progress) as advance:
        for _ in range(epochs):
            mapper.train()
            gpt.train(finetune_gpt2)
            total = 0.0
            for batch in np.array_split(rng.permutation(len(X)), steps // epochs):
                loss = _loss(mapper, gpt, X[batch], [tokens[i] for i in batch], tokenizer.eos_token_id, device)
                opt.zero_grad()
                loss.backward()
                opt.step()
                schedule.step()
                total += loss.item() * len(batch)
                advance(1)
            losses.append(round(total / len(X), 4))
    config = {"format": FORMAT, "version": 1, "layout": layout, "dim": int(X.shape[1]), "prefix_length": prefix_length,
              "clip_length": clip_length if layout == "transformer" else 0,
              "num_layers": num_layers if layout == "transformer" else 0, "prefix_scale": 1.0, "gpt2": gpt2,
              "gpt2_local": bool(finetune_gpt2 or Path(gpt2).expanduser().is_dir()), "model": model, "stop": [],
              "fit": {"pairs": len(X), "epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed,
                      "finetune_gpt2": finetune_gpt2, "loss_per_epoch": losses}}
    return Captioner(mapper, gpt, tokenizer, config)


def _loss(mapper: Any, gpt: Any, X: np.ndarray, tokens: list[list[int]], pad: int, device: str) -> Any:
    """Mean cross-entropy of the caption tokens after the prefix (prefix and padding not scored)."""
    import torch

    n, longest = len(tokens), max(len(t) for t in tokens)
    ids = torch.full((n, longest), pad, dtype=torch.long)
    mask = torch.zeros((n, longest), dtype=torch.long)
    for i, t in enumerate(tokens):
        ids[i, : len(t)] = torch.tensor(t)
        mask[i, : len(t)] = 1
    ids, mask = ids.to(device), mask.to(device)
    prefix = mapper(torch.as_tensor(X, device=device))
    L = prefix.shape[1]
    embeds = torch.cat((prefix, gpt.get_input_embeddings()(ids)), dim=1)
    attention = torch.cat((torch.ones((n, L), dtype=torch.long, device=device), mask), dim=1)
    labels = torch.cat((torch.full((n, L), -100, dtype=torch.long, device=device), ids.masked_fill(mask == 0, -100)), dim=1)
    return gpt(inputs_embeds=embeds, attention_mask=attention, labels=labels).loss


def read_captions(path: str | Path, ids: Sequence[str] | None, n: int) -> tuple[list[int], list[str]]:
    """(row, caption) pairs for n embeddings from a file: .txt (one caption per line, row order),
    .json (a list in row order, {id: caption or [captions]}, or `semzip caption`'s [{id, caption}]),
    .parquet (a `caption` column; ids from id/image_path/url/key when present), .csv (a `caption`
    column, and an `id` column matched to `ids`, else row order). Several captions of one image give
    several pairs."""
    import csv

    path = Path(path)
    try:
        if path.suffix == ".parquet":  # a clip-retrieval metadata file, or `semzip caption -o x.parquet`
            from .._inputs import ID_COLUMNS, read_parquet_column

            _, said = read_parquet_column(path, ("caption",), "captions")
            try:
                _, named = read_parquet_column(path, ID_COLUMNS, "item ids")
            except InputError:
                named = None
            text = json.dumps(said if named is None else [{"id": i, "caption": c} for i, c in zip(named, said)])
        else:
            text = path.read_text(encoding="utf-8")
        if path.suffix in (".json", ".parquet"):
            data = json.loads(text)
        elif path.suffix == ".csv":
            table = list(csv.DictReader(text.splitlines()))
            if not table or "caption" not in table[0]:
                raise ValueError("a CSV of captions needs a header with a `caption` column")
            if "id" in table[0]:
                data = {}
                for row in table:
                    data.setdefault(row["id"], []).append(row["caption"])
            else:
                data = [row["caption"] for row in table]
        else:
            data = [line.strip() for line in text.splitlines() if line.strip()]
        if isinstance(data, list) and data and all(isinstance(r, dict) for r in data):  # `semzip caption -o x.json`
            rows_by_id: dict = {}
            for r in data:
                rows_by_id.setdefault(str(r["id"]), []).append(r["caption"])
            data = rows_by_id
    except (OSError, UnicodeDecodeError, ValueError, KeyError) as exc:
        raise InputError(f"cannot read captions from {str(path)!r} ({exc})") from None
    if isinstance(data, dict):
        if ids is None:
            raise InputError(f"{str(path)!r} pairs captions by id, but the embeddings have no ids")
        where = {i: r for r, i in enumerate(ids)}
        unknown = [k for k in data if k not in where]
        if unknown:
            raise InputError(f"{str(path)!r} names {len(unknown)} ids the embeddings do not have, e.g. {unknown[0]!r}")
        rows = [(where[k], v) for k, v in data.items()]
    elif isinstance(data, list):
        if len(data) != n:
            raise InputError(f"{str(path)!r} has {len(data)} captions for {n} embeddings (give one per row, or ids)")
        rows = list(enumerate(data))
    else:
        raise InputError(f"{str(path)!r}: captions must be a list or an object of id -> caption")
    pairs = [(r, c) for r, v in rows for c in ([v] if isinstance(v, str) else v if isinstance(v, list) else [None])]
    if not pairs or not all(isinstance(c, str) and c.strip() for _, c in pairs):
        raise InputError(f"{str(path)!r}: every caption must be a non-empty string")
    return [r for r, _ in pairs], [str(c) for _, c in pairs]
