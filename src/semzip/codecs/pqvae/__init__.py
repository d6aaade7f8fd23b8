"""PQ-VAE with one shared codebook: the single-image semantic codec (Shen et al. 2025).

"Compression Beyond Pixels" compresses a CLIP embedding by lifting it to a small spatial latent grid,
cutting the latent into short sub-vectors and quantising every sub-vector against ONE codebook shared
by all of them. Here, for width d, hidden channels H, latent channels C and a g x g grid:

- encoder: a transposed convolution lifts the (d, 1, 1) embedding to (H, g, g); `blocks` residual
  blocks (SiLU, 3x3 conv, SiLU, 1x1 conv); SiLU and a 1x1 conv to the (C, g, g) latent;
- the latent is read as g*g*C/dim unit sub-vectors of length `dim` (position-major, then channel
  groups), each replaced by the nearest of the K shared unit codewords;
- decoder: the mirror image (1x1 conv to H, residual blocks, a g x g convolution back to d), and the
  output is L2-normalised.

Three additions to the paper's design (docs/PQVAE.md has the numbers): the network sees the embedding
centred and half-whitened (bits go to the low-variance directions that carry most of the zero-shot
information); an optional coarse first stage (`coarse` bits of spherical k-means on the whole
embedding) picks a semantic cluster whose residual the PQ-VAE then codes; and an optional last stage
(`bits`: total rate target) transform-codes what is left — principal axes of the residual, uniform
scalar quantisation, per-axis entropy coding — which keeps improving where the PQ-VAE saturates.

Training (`fit`) uses torch on the CPU (`_train`, imported only there). Everything else —
encoding, decoding, searching — runs the exported weights with numpy, so archives can be written and
read without torch; inference is float64 with exact products and a libm-free SiLU (semzip._exact), so
a code decodes to the same bits on every machine, thread count and batch. Indices are entropy-coded with per-position frequencies counted at fit.

Not idempotent: re-encoding a decoded vector goes through the encoder again and need not land on the
same codewords, so `idempotent = False`.

Modules: `_net` (the network's arrays, by name and shape), `_infer` (the numpy network), `_train`
(torch training, imported by `fit` only), `_codec` (the codec: how the stages compose, coding, state);
the coarse and residual stages are `codecs._stages.CoarseStage` and `TransformStage`.
"""

from ._codec import PQVAECodec

__all__ = ["PQVAECodec"]
