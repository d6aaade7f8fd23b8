"""The trained PQ-VAE network run with numpy: the same bits on every machine, thread count and batch
(float64 with exact products and a libm-free SiLU, semzip._exact), so archives are written and read
without torch."""

from __future__ import annotations

import numpy as np

from ..._clusters import assignment_matrix, nearest
from ..._exact import ExactMatrix, sigmoid
from ..._validate import l2_normalize
from ._net import Arch

#: Items per numpy inference block: bounds the memory of the (n, g, g, 9H) convolution columns.
BLOCK = 2048


class NumpyNet:
    """Encoder, codeword assignment and decoder from the exported weights (torch layout, `_net`):
    channels-last matrices as exact operands, float64 biases and the float32 codeword scorer."""

    def __init__(self, weights: dict[str, np.ndarray], d: int, arch: Arch) -> None:
        w, g, H = weights, arch.grid, arch.H
        self.d, self.grid, self.H, self.C, self.dim, self.blocks = d, g, H, arch.C, arch.dim, arch.blocks
        self.n_sub = arch.n_sub
        m: dict[str, np.ndarray] = {
            "lift": w["enc_lift_w"].transpose(0, 2, 3, 1).reshape(d, g * g * H),
            "out": w["dec_out_w"].transpose(2, 3, 1, 0).reshape(g * g * H, d),
        }
        convs = [k for k, v in w.items() if v.ndim == 4 and v.shape[2:] == (3, 3)]
        for k, v in w.items():
            if k in convs:
                m[k] = v.transpose(2, 3, 1, 0).reshape(9 * v.shape[1], v.shape[0])
            elif v.ndim == 4 and v.shape[2:] == (1, 1) and k not in ("enc_lift_w", "dec_out_w"):
                m[k] = v[:, :, 0, 0].T
        self._mats = {k: ExactMatrix(v) for k, v in m.items()}
        if g <= 2:  # every output cell of a 3x3 convolution sees the whole grid: one dense product
            for k in convs:
                self._mats[k] = self._mats[k].gathered(_dense_taps(g, w[k].shape[1]))
        self._scorer = assignment_matrix(w["codebook"])
        self._bias = {k: v.astype(np.float64) for k, v in w.items() if v.ndim == 1}

    def _blocks(self, h: np.ndarray, side: str) -> np.ndarray:
        m, b = self._mats, self._bias
        for i in range(self.blocks):
            t = self._conv3(_silu(h), m[f"{side}_b{i}_w1"]) + b[f"{side}_b{i}_b1"]
            h = h + m[f"{side}_b{i}_w2"].left_product(_silu(t)) + b[f"{side}_b{i}_b2"]
        return h

    def _conv3(self, h: np.ndarray, w: ExactMatrix) -> np.ndarray:
        """3x3 convolution of channels-last h (n, g, g, Ci): on grids of side <= 2 as the dense product
        `w` was gathered for (the same bits as the im2col product: `_dense_taps`), else im2col."""
        if self.grid <= 2:
            return w.left_product(h.reshape(len(h), -1)).reshape(*h.shape[:3], -1)
        return _conv3(h, w)

    def encode(self, X: np.ndarray) -> np.ndarray:
        """Unit latent sub-vectors, (n, n_sub, dim) float32, of whitened unit vectors X."""
        out = np.empty((len(X), self.n_sub, self.dim), dtype=np.float32)
        m, b, g = self._mats, self._bias, self.grid
        for i in range(0, len(X), BLOCK):
            x = X[i : i + BLOCK]
            h = m["lift"].left_product(x).reshape(len(x), g, g, self.H) + b["enc_lift_b"]
            h = self._blocks(h, "enc")
            z = m["enc_out_w"].left_product(_silu(h)) + b["enc_out_b"]
            out[i : i + len(x)] = l2_normalize(z.reshape(-1, self.dim)).reshape(len(x), self.n_sub, self.dim)
        return out

    def assign(self, Z: np.ndarray) -> np.ndarray:
        """Nearest shared (unit) codeword of every sub-vector: argmax z.e - |e|^2/2; int32 (n, n_sub)."""
        flat = Z.reshape(-1, self.dim)
        return nearest(flat, self._scorer, max(1, len(flat))).astype(np.int32).reshape(len(Z), self.n_sub)

    def decode(self, Zq: np.ndarray) -> np.ndarray:
        """Unit vectors in the centred space, float64 (n, d), from quantised latents (n, n_sub, dim)."""
        m, b, g = self._mats, self._bias, self.grid
        out = np.empty((len(Zq), self.d), dtype=np.float64)
        for i in range(0, len(Zq), BLOCK):
            z = Zq[i : i + BLOCK].reshape(-1, g, g, self.C)
            h = m["dec_in_w"].left_product(z) + b["dec_in_b"]
            h = self._blocks(h, "dec")
            y = m["out"].left_product(_silu(h).reshape(len(z), -1)) + b["dec_out_b"]
            norms = np.linalg.norm(y, axis=1, keepdims=True)
            out[i : i + len(z)] = y / np.maximum(norms, 1e-12)
        return out


def _silu(x: np.ndarray) -> np.ndarray:
    """x * sigmoid(x) in float64, the same bits on every machine (semzip._exact)."""
    return x * sigmoid(x)


def _dense_taps(g: int, ci: int) -> list[np.ndarray]:
    """For each output cell of a g x g grid (g <= 2), the im2col row (tap, channel) that meets each input
    (cell, channel) of the flattened grid. Every input cell is within that output's 3x3 window, so
    the im2col row of an output cell holds the item's whole input plus zeros: the same largest
    magnitude (the same integer scale) and the same nonzero integer terms as this dense row."""
    blocks = []
    for y, x in np.ndindex(g, g):
        taps = [(y2 - y + 1) * 3 + (x2 - x + 1) for y2, x2 in np.ndindex(g, g)]
        blocks.append((np.array(taps)[:, None] * ci + np.arange(ci)[None, :]).ravel())
    return blocks


def _conv3(h: np.ndarray, w: ExactMatrix) -> np.ndarray:
    """3x3 convolution, zero padding 1, channels-last h (n, g, g, Ci) with w (9*Ci, Co) in (ky, kx, ci) order."""
    g = h.shape[1]
    p = np.pad(h, ((0, 0), (1, 1), (1, 1), (0, 0)))
    cols = np.concatenate([p[:, ky : ky + g, kx : kx + g] for ky in range(3) for kx in range(3)], axis=3)
    return w.left_product(cols)
