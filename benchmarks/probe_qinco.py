"""Would a QINCo-style codec (residual codebooks conditioned on the partial reconstruction) beat rq here?

A probe, not a codec: issue 13 asks for a neural residual quantiser in the QINCo style; before one is
built into the registry, this measures whether conditioning helps on the data semzip can train on.
Pool: the README's training pool (ImageNet 4-shot, Food-101 train, Flowers/Pets/DTD val; 9,113
vectors), 1,000 of them held out for choosing the epoch. rq: faiss `ResidualQuantizer` M x 8 bits,
progressive training, beam 8 (semzip's `rq:M=..,K=256,beam=8` fit). The conditioned quantiser
starts from those codebooks: stage m > 0 codes index k as c_k + W2 relu(V c_k + W1 x_hat + b1),
x_hat the reconstruction of stages before it (QINCo's step with one hidden layer of `--hidden`
units; W2 starts at 0, so training starts from rq with greedy encoding). Encoding is greedy over
the 32 codewords nearest the residual (QINCo2's pre-selection); training minimises the final
squared error with Adam (one-cycle schedule), the epoch with the best held-out error is kept.
Printed: squared error, cosine and (Caltech) zero-shot top-1 of rq with beam 8, rq greedy, and the
trained quantiser (greedy), on zero-shot Caltech-101 (a domain outside the pool), Flowers test
(its val split is in the pool) and 2,000 pool vectors. One thread.

    python benchmarks/probe_qinco.py --M 8 --hidden 128 --lr 3e-4
    python benchmarks/probe_qinco.py --M 8 --hidden 256 --lr 1e-4 --train-codebooks
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _data import clip_data  # noqa: E402

K, CANDIDATES, BATCH = 256, 32, 256


def pool_and_tests(d: Path) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray, np.ndarray]:
    load = lambda f: np.load(d / f)  # noqa: E731
    pool = np.concatenate([load("imagenet_fewshot.npz")["shots4_features"], load("food101.npz")["train_features"]]
                          + [load(f"{n}.npz")["val_features"] for n in ("oxford_flowers", "oxford_pets", "dtd")])
    zs = load("zeroshot_caltech101.npz")
    tests = {"caltech": zs["image_features"], "flowers": load("oxford_flowers.npz")["test_features"], "pool": pool[:2000]}
    return (pool.astype(np.float32), {k: v.astype(np.float32) for k, v in tests.items()},
            zs["text_features"].astype(np.float32), zs["labels"])


def conditioned(torch, codebooks: np.ndarray, hidden: int):
    """The conditioned residual quantiser as a torch module, started at rq's codebooks."""
    M, _, d = codebooks.shape

    class Conditioned(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.C = torch.nn.Parameter(torch.tensor(codebooks))
            self.V = torch.nn.Parameter(0.02 * torch.randn(M, d, hidden))
            self.W1 = torch.nn.Parameter(0.02 * torch.randn(M, d, hidden))
            self.b1 = torch.nn.Parameter(torch.zeros(M, hidden))
            self.W2 = torch.nn.Parameter(torch.zeros(M, hidden, d))

        def codewords(self, m: int, k, x_hat):
            """Codewords k (n, a) of stage m given x_hat (n, d): (n, a, d)."""
            c = self.C[m][k]
            if m == 0:
                return c
            h = torch.relu(c @ self.V[m] + (x_hat @ self.W1[m])[:, None, :] + self.b1[m])
            return c + h @ self.W2[m]

        def forward(self, x):
            x_hat = torch.zeros_like(x)
            for m in range(M):
                r = x - x_hat
                with torch.no_grad():  # greedy over the codewords nearest the residual
                    near = (r @ self.C[m].T - 0.5 * (self.C[m] ** 2).sum(1)).topk(CANDIDATES, dim=1).indices
                    best = ((r[:, None, :] - self.codewords(m, near, x_hat)) ** 2).sum(2).argmin(1)
                    k = near.gather(1, best[:, None])
                x_hat = x_hat + self.codewords(m, k, x_hat)[:, 0]
            return x_hat

    return Conditioned()


def report(name: str, decode, tests: dict[str, np.ndarray], text: np.ndarray, labels: np.ndarray) -> None:
    for task, X in tests.items():
        R = decode(X)
        cos = float(np.mean(np.sum(X * R, 1) / np.linalg.norm(R, axis=1)))
        line = f"{name:14s} {task:8s} squared error {float(((X - R) ** 2).sum(1).mean()):.4f}  cosine {cos:.4f}"
        if task == "caltech":
            line += f"  zero-shot top-1 {float(np.mean((R @ text.T).argmax(1) == labels)):.3f}"
        print(line, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--M", type=int, default=8)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--train-codebooks", action="store_true", help="train rq's codebooks too (else only the network)")
    ap.add_argument("--data")
    args = ap.parse_args()

    import faiss
    import torch

    torch.manual_seed(0)
    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)
    pool, tests, text, labels = pool_and_tests(clip_data(args.data))
    rq = faiss.ResidualQuantizer(pool.shape[1], args.M, 8)
    rq.train_type = faiss.ResidualQuantizer.Train_progressive_dim
    rq.max_beam_size, rq.cp.niter, rq.cp.min_points_per_centroid = 8, 20, 1
    t = time.perf_counter()
    rq.train(pool)
    print(f"rq trained in {time.perf_counter() - t:.0f} s", flush=True)
    report("rq beam 8", lambda X: rq.decode(rq.compute_codes(X)), tests, text, labels)
    net = conditioned(torch, faiss.vector_to_array(rq.codebooks).reshape(args.M, K, -1), args.hidden)
    run = lambda X: net(torch.tensor(X)).numpy()  # noqa: E731
    with torch.no_grad():
        report("rq greedy", run, tests, text, labels)
    params = [net.V, net.W1, net.b1, net.W2] + ([net.C] if args.train_codebooks else [])
    opt = torch.optim.Adam(params, lr=args.lr)
    perm = np.random.default_rng(0).permutation(len(pool))
    held, train = torch.tensor(pool[perm[:1000]]), torch.tensor(pool[perm[1000:]])
    steps = args.epochs * -(-len(train) // BATCH)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=steps)
    best = (np.inf, None)
    for epoch in range(args.epochs):
        order = torch.randperm(len(train))
        for i in range(0, len(train), BATCH):
            x = train[order[i : i + BATCH]]
            loss = ((x - net(x)) ** 2).sum(1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        with torch.no_grad():
            err = float(((held - net(held)) ** 2).sum(1).mean())
        print(f"epoch {epoch}: held-out squared error {err:.4f}", flush=True)
        if err < best[0]:
            best = (err, {k: v.clone() for k, v in net.state_dict().items()})
    net.load_state_dict(best[1])
    with torch.no_grad():
        report("conditioned", run, tests, text, labels)


if __name__ == "__main__":
    main()
