"""The PQ-VAE network's learned arrays, named and shaped from the spec and width alone: shared by
the torch trainer, the numpy inference and the codec file check."""

from __future__ import annotations

from typing import NamedTuple


class Arch(NamedTuple):
    """The network's spec parameters: sub-vector length, shared codebook size, latent grid side,
    latent channels, hidden channels and residual blocks per side."""

    dim: int
    K: int
    grid: int
    C: int
    H: int
    blocks: int

    @property
    def n_sub(self) -> int:
        """Latent sub-vectors (indices) per item."""
        return self.grid * self.grid * self.C // self.dim


def net_shapes(d: int, arch: Arch) -> dict[str, tuple[int, ...]]:
    """Names and shapes (torch layout) of every learned array, derived from the spec and width only."""
    dim, K, g, C, H, blocks = arch
    shapes: dict[str, tuple[int, ...]] = {"enc_lift_w": (d, H, g, g), "enc_lift_b": (H,)}
    for i in range(blocks):
        shapes |= {f"enc_b{i}_w1": (H, H, 3, 3), f"enc_b{i}_b1": (H,), f"enc_b{i}_w2": (H, H, 1, 1), f"enc_b{i}_b2": (H,)}
    shapes |= {"enc_out_w": (C, H, 1, 1), "enc_out_b": (C,), "codebook": (K, dim)}
    shapes |= {"dec_in_w": (H, C, 1, 1), "dec_in_b": (H,)}
    for i in range(blocks):
        shapes |= {f"dec_b{i}_w1": (H, H, 3, 3), f"dec_b{i}_b1": (H,), f"dec_b{i}_w2": (H, H, 1, 1), f"dec_b{i}_b2": (H,)}
    shapes |= {"dec_out_w": (d, H, g, g), "dec_out_b": (d,)}
    return shapes


def state_shapes(d: int, arch: Arch, coarse: int, refine_alphabet: int = 0) -> dict[str, tuple[int, ...]]:
    """Every stored array: the network, the whitening (mean, basis, scale, rho), the coarse stage
    (centroids and index counts, when coarse > 0), the index counts and the residual stage (mean,
    axes, steps and symbol counts, when it has an alphabet)."""
    fixed = {"mean": (d,), "basis": (d, d), "scale": (d,), "rho": (1,), "counts": (arch.n_sub, arch.K)}
    if coarse:
        fixed |= {"coarse_centroids": (1 << coarse, d), "coarse_counts": (1, 1 << coarse)}
    if refine_alphabet:
        fixed |= {"refine_mean": (d,), "refine_basis": (d, d), "refine_steps": (d,),
                  "refine_counts": (d, refine_alphabet)}
    return net_shapes(d, arch) | fixed
