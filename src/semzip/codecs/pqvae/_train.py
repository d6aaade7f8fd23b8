"""Training of the PQ-VAE codec with torch on the CPU; imported lazily by `PQVAECodec._fit` only.

Loss: (1 - cosine) reconstruction + codebook term |sg(z) - e|^2 + beta * commitment |z - sg(e)|^2,
gradients through the quantiser by the straight-through estimator. Details that make it work on a
few thousand CLIP vectors:

- a short warm-up without quantisation, then the codebook starts as k-means of the latent sub-vectors
  (a random codebook leaves most codewords dead from the first step);
- latent sub-vectors and codewords live on the unit sphere (cosine assignment), so the codebook and
  commitment terms cannot grow with the latent scale and crowd out the reconstruction;
- dead-code restarts: after every epoch, codewords no sub-vector chose are moved onto random latent
  sub-vectors of that epoch;
- data augmentation by mixing: a share `mix` of each batch of network inputs (whitened residual
  directions) is replaced by normalised convex mixtures of two of them, which fills the sphere
  between the training points;
- early stopping on held-out vectors, scored with hard quantisation exactly as the codec encodes.

Seeded and deterministic for a fixed thread count (`threads`, 1 by default): torch's deterministic
algorithms are switched on for the duration of the fit and the previous settings restored after.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from ..._progress import progress_bar
from ._net import net_shapes

if TYPE_CHECKING:
    from ._codec import PQVAECodec

_WARMUP_EPOCHS = 2
_KMEANS_ITERS = 20


@contextlib.contextmanager
def _torch_settings(threads: int) -> Iterator[None]:
    old_threads = torch.get_num_threads()
    old_det = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.set_num_threads(old_threads)
        torch.use_deterministic_algorithms(old_det)


class _Net(torch.nn.Module):
    """The PQ-VAE in torch, parameters named exactly as `net_shapes` so export is a plain copy."""

    def __init__(self, codec: PQVAECodec, d: int) -> None:
        super().__init__()
        self.c = codec
        shapes = net_shapes(d, codec.arch)
        self.p = torch.nn.ParameterDict()
        for name, shape in shapes.items():
            if name == "codebook":
                t = torch.zeros(shape)  # set from k-means after the warm-up
            elif name.endswith("_w2"):
                t = torch.zeros(shape)  # residual blocks start as the identity
            else:
                w = _weight_of(name)
                fan_in = d if w == "enc_lift_w" else int(np.prod(shapes[w][1:]))
                bound = 1.0 / np.sqrt(fan_in)
                t = torch.empty(shape).uniform_(-bound, bound)
            self.p[name] = torch.nn.Parameter(t)

    # Channels-last (n, g, g, H), every layer a matrix product, exactly as the numpy inference: the
    # lift (a transposed convolution on a 1x1 input) and the g x g output convolution are dense layers,
    # and torch's conv kernels are several times slower than matmul on grids this small.
    def _blocks(self, h: torch.Tensor, side: str) -> torch.Tensor:
        p = self.p
        for i in range(self.c.blocks):
            t = _conv3(F.silu(h), p[f"{side}_b{i}_w1"]) + p[f"{side}_b{i}_b1"]
            h = h + F.silu(t) @ p[f"{side}_b{i}_w2"][:, :, 0, 0].T + p[f"{side}_b{i}_b2"]
        return h

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(n, d) -> unit latent sub-vectors (n, n_sub, dim)."""
        p, g, H = self.p, self.c.grid, self.c.H
        lift = p["enc_lift_w"].permute(0, 2, 3, 1).reshape(x.shape[1], g * g * H)
        h = (x @ lift).reshape(len(x), g, g, H) + p["enc_lift_b"]
        h = self._blocks(h, "enc")
        z = F.silu(h) @ p["enc_out_w"][:, :, 0, 0].T + p["enc_out_b"]
        return F.normalize(z.reshape(len(x), -1, self.c.dim), dim=-1)

    def decode(self, zq: torch.Tensor) -> torch.Tensor:
        """(n, n_sub, dim) -> unit vectors (n, d)."""
        p, g, H = self.p, self.c.grid, self.c.H
        h = zq.reshape(len(zq), g, g, self.c.C) @ p["dec_in_w"][:, :, 0, 0].T + p["dec_in_b"]
        h = self._blocks(h, "dec")
        out = p["dec_out_w"].permute(2, 3, 1, 0).reshape(g * g * H, -1)
        return F.normalize(F.silu(h).reshape(len(zq), -1) @ out + p["dec_out_b"], dim=1)

    def codewords(self) -> torch.Tensor:
        """The shared codebook, rows on the unit sphere like the latent sub-vectors."""
        return F.normalize(self.p["codebook"], dim=1)

    def assign(self, z: torch.Tensor) -> torch.Tensor:
        """Nearest shared codeword per sub-vector (largest cosine)."""
        return (z @ self.codewords().T).argmax(-1)


def _conv3(h: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """3x3 convolution, zero padding 1, channels-last h (n, g, g, Ci), torch-layout w (Co, Ci, 3, 3)."""
    g = h.shape[1]
    p = F.pad(h, (0, 0, 1, 1, 1, 1))
    cols = torch.cat([p[:, ky : ky + g, kx : kx + g] for ky in range(3) for kx in range(3)], dim=3)
    return cols @ w.permute(2, 3, 1, 0).reshape(-1, w.shape[0])


def _weight_of(name: str) -> str:
    """The weight whose fan-in sets the init range of `name` (a bias uses its layer's weight)."""
    if name.endswith("_b"):
        return name[:-2] + "_w"
    if name[-2:] in ("b1", "b2") and name[-3] == "_":
        return name[:-2] + "w" + name[-1]
    return name


def _kmeans(v: torch.Tensor, k: int, gen: torch.Generator) -> torch.Tensor:
    """Plain Lloyd k-means from k distinct random points; empty clusters keep their centre."""
    centres = v[torch.randperm(len(v), generator=gen)[:k]].clone()
    if len(centres) < k:  # fewer sub-vectors than codewords: repeat with a little noise
        extra = centres[torch.randint(len(centres), (k - len(centres),), generator=gen)]
        centres = torch.cat([centres, extra + 1e-3 * torch.randn(extra.shape, generator=gen)])
    for _ in range(_KMEANS_ITERS):
        idx = (v @ centres.T - 0.5 * (centres * centres).sum(1)).argmax(1)
        sums = torch.zeros_like(centres).index_add_(0, idx, v)
        counts = torch.bincount(idx, minlength=k).unsqueeze(1)
        centres = torch.where(counts > 0, sums / counts.clamp(min=1), centres)
    return centres


def _mix(x: torch.Tensor, share: float, gen: torch.Generator) -> torch.Tensor:
    """Replace a share of the batch of network inputs by normalised mixtures a*x_i + (1-a)*x_j, a ~ U(0, 1)."""
    n = len(x)
    chosen = torch.rand(n, generator=gen) < share
    partner = x[torch.randperm(n, generator=gen)]
    a = torch.rand(n, 1, generator=gen)
    mixed = F.normalize(a * x + (1 - a) * partner, dim=1)
    return torch.where(chosen[:, None], mixed, x)


class _Frame:
    """The fixed map from a unit embedding to the network's input: coarse residual, centred, whitened."""

    def __init__(self, coarse: np.ndarray | None, mean: np.ndarray, white: np.ndarray) -> None:
        self.coarse = None if coarse is None else torch.from_numpy(coarse.astype(np.float32))
        self.mean, self.white = (torch.from_numpy(a.astype(np.float32)) for a in (mean, white))

    def inward(self, x: torch.Tensor) -> torch.Tensor:
        if self.coarse is not None:
            x = x - self.coarse[(x @ self.coarse.T).argmax(1)]
        return F.normalize((x - self.mean) @ self.white, dim=1)


def _losses(net: _Net, w: torch.Tensor, codec: PQVAECodec,
            quantise: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor | None]:
    """Total loss on network inputs w, its terms, and the chosen indices (None before quantising)."""
    z = net.encode(w)
    idx = None
    if quantise:
        idx = net.assign(z.detach())
        e = net.codewords()[idx]
        zq = z + (e - z).detach()  # straight-through estimator
        l_cb, l_commit = F.mse_loss(e, z.detach()), F.mse_loss(z, e.detach())
    else:
        zq, l_cb, l_commit = z, torch.zeros(()), torch.zeros(())
    l_rec = 1 - (net.decode(zq) * w).sum(1).mean()
    loss = l_rec + l_cb + codec.beta * l_commit
    return loss, {"rec": l_rec, "cb": l_cb, "commit": l_commit}, idx


def train(codec: PQVAECodec, X: np.ndarray, X_val: np.ndarray, coarse: np.ndarray | None, mean: np.ndarray,
          white: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Train network and codebook on unit vectors X seen through the coarse stage and whitening;
    X_val (held out) decides when to stop and which epoch's weights to keep."""
    with _torch_settings(codec.threads):
        return _train(codec, X, X_val, _Frame(coarse, mean, white))


def _epoch(net: _Net, opt: torch.optim.Optimizer, tr_w: torch.Tensor, codec: PQVAECodec, gen: torch.Generator,
           bs: int, quantise: bool) -> tuple[dict[str, float], torch.Tensor, torch.Tensor | None]:
    """One pass over the (mixed) training inputs in a seeded order: summed loss terms, codeword
    usage counts, and the last batch's latent sub-vectors (what dead codewords restart on)."""
    usage = torch.zeros(codec.K, dtype=torch.long)
    sums = dict.fromkeys(("loss", "rec", "cb", "commit"), 0.0)
    last_z = None
    perm = torch.randperm(len(tr_w), generator=gen)
    for i in range(0, len(tr_w), bs):
        w = _mix(tr_w[perm[i : i + bs]], codec.mix, gen)
        loss, terms, idx = _losses(net, w, codec, quantise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if idx is not None:
            usage += torch.bincount(idx.flatten(), minlength=codec.K)
            last_z = net.encode(w).detach().reshape(-1, codec.dim) if i + bs >= len(tr_w) else None
        for k, v in ({"loss": loss} | terms).items():
            sums[k] += float(v.detach()) * len(w)
    return sums, usage, last_z


def _train(codec: PQVAECodec, X: np.ndarray, X_val: np.ndarray,
           frame: _Frame) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    t0 = time.perf_counter()
    torch.manual_seed(codec.seed)
    gen = torch.Generator().manual_seed(codec.seed)
    d = X.shape[1]
    val = torch.from_numpy(np.ascontiguousarray(X_val))
    tr = torch.from_numpy(np.ascontiguousarray(X))
    val_w, tr_w = frame.inward(val), frame.inward(tr)  # the frame is fixed: map once

    net = _Net(codec, d)
    opt = torch.optim.Adam(net.parameters(), lr=codec.lr)
    total = _WARMUP_EPOCHS + codec.epochs
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: 0.5 * (1 + np.cos(np.pi * min(e, total) / total)))
    bs = max(1, min(codec.batch_size, len(tr)))

    best: tuple[float, int, dict[str, torch.Tensor]] = (np.inf, -1, {})
    history: list[dict[str, Any]] = []
    restarts = 0
    with progress_bar("pqvae fit (epochs)", total, enabled=codec.progress) as bar:
        for epoch in range(total):
            quantise = epoch >= _WARMUP_EPOCHS
            if epoch == _WARMUP_EPOCHS:
                with torch.no_grad():
                    latents = net.encode(tr_w).reshape(-1, codec.dim)
                    net.p["codebook"].copy_(_kmeans(latents, codec.K, gen))
            sums, usage, last_z = _epoch(net, opt, tr_w, codec, gen, bs, quantise)
            sched.step()
            dead = torch.nonzero(usage == 0).flatten() if quantise else torch.zeros(0, dtype=torch.long)
            if len(dead) and last_z is not None:
                restarts += len(dead)
                pick = torch.randint(len(last_z), (len(dead),), generator=gen)
                with torch.no_grad():
                    net.p["codebook"][dead] = last_z[pick]
            with torch.no_grad():
                _, val_terms, _ = _losses(net, val_w, codec, True)
                val_loss = float(val_terms["rec"])  # the task, not the VQ terms
            row = {"epoch": epoch, "phase": "vq" if quantise else "warmup"} | {k: v / len(tr) for k, v in sums.items()}
            history.append(row | {"val_loss": val_loss, "dead": len(dead)})
            bar(1, f"loss {row['loss']:.4f}  held-out loss {float(val_loss):.4f}")
            if quantise and float(val_loss) < best[0]:
                best = (float(val_loss), epoch, {k: v.detach().clone() for k, v in net.p.items()})
            elif quantise and epoch - best[1] > codec.patience:
                break

    best[2]["codebook"] = F.normalize(best[2]["codebook"], dim=1)
    weights = {k: v.numpy().astype(np.float32) for k, v in best[2].items()}
    info = {"epochs_run": len(history), "best_epoch": best[1], "best_val_loss": best[0], "n_val": len(X_val),
            "dead_code_restarts": restarts, "train_seconds": round(time.perf_counter() - t0, 2),
            "history": [{k: (round(v, 5) if isinstance(v, float) else v) for k, v in h.items()} for h in history]}
    return weights, info


