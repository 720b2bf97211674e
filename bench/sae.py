"""Our SAE trainer against SAELens's SAETrainer on the same activations: TopK, k=32, 8x expansion.

    python bench/sae.py [--store data/store] [--steps 600] [--lr 2e-3] [--ours-lr 6e-3]

Reads MiniLM layer 3's stored resid_post rows of the corpus (after `make demo`), holds out 10% of the
documents (seeded, as the train_sae stage does), and trains on the rest with the same batches in the
same order: ours (cortexlens.sae.train, one thread) in this process, SAELens 6's trainer in
.venv-saelens (see constraints-saelens.txt) on one thread. Both are timed on training alone, and both
are scored with the same held-out FVU (sum of squared errors / sum of squared deviations from the mean).
Prints tokens/s of each, their ratio, and final FVU and L0. Learning rates differ on purpose: ours
trains on activations scaled to E||x||^2 = d_in (SAELens's TopK default trains on raw ones), so the
same number is a different step; each gets the one that served it best in a sweep (SAELens: 2e-3
and 4e-3; ours, 2026-12-02: FVU 0.073 at 2e-3, 0.0690 at 4e-3, 0.0677 at 6e-3, 0.0677 at 8e-3).
(eai-sparsify is not benchmarked: its
trainer is written for CUDA.)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BATCH = 1024


def batches(X: np.ndarray, steps: int, seed: int = 0):
    """`steps` batches of BATCH rows: a seeded permutation per epoch."""
    per_epoch = len(X) // BATCH
    for step in range(steps):
        epoch, b = divmod(step, per_epoch)
        perm = np.random.default_rng((seed, epoch)).permutation(len(X))
        yield X[perm[b * BATCH:(b + 1) * BATCH]]


def fvu_l0(encode, decode, X: np.ndarray) -> tuple[float, float]:
    import torch

    with torch.no_grad():
        x = torch.from_numpy(X)
        f = encode(x)
        err = float(((decode(f) - x).double() ** 2).sum())
        return err / float(((x.double() - x.double().mean(0)) ** 2).sum()), float((f != 0).sum(-1).float().mean())


def saelens_side(data: str, out: str, steps: int, lr: float) -> None:
    """Runs in .venv-saelens."""
    import torch
    from sae_lens.config import SAETrainerConfig
    from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig
    from sae_lens.training.sae_trainer import SAETrainer

    torch.set_num_threads(1)
    X, H = np.load(Path(data) / "train.npy"), np.load(Path(data) / "held.npy")
    sae = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=X.shape[1], d_sae=8 * X.shape[1], k=32, dtype="float32",
                                                device="cpu"))
    cfg = SAETrainerConfig(total_training_samples=steps * BATCH, train_batch_size_samples=BATCH, lr=lr, lr_end=lr,
                           device="cpu", n_batches_for_norm_estimate=4)
    provider = (torch.from_numpy(b) for b in batches(X, steps + 8))
    trainer = SAETrainer(cfg, sae, provider)
    start = time.perf_counter()
    trainer.fit()
    seconds = time.perf_counter() - start
    sae.eval()
    fvu, l0 = fvu_l0(sae.encode, sae.decode, H)
    Path(out).write_text(json.dumps({"seconds": seconds, "fvu": fvu, "l0": l0}))


def ours(X: np.ndarray, H: np.ndarray, steps: int, lr: float) -> dict:
    import torch

    from cortexlens.sae.model import CoderConfig
    from cortexlens.sae.train import TrainConfig, train

    torch.set_num_threads(1)
    per_epoch = len(X) // BATCH

    def stream(epoch: int, start: int):
        for x in batches(X, steps + per_epoch, 0):
            yield x, x

    def from_step(epoch: int, start: int):
        it = stream(0, 0)
        for _ in range(epoch * per_epoch + start):
            next(it)
        return it

    cfg = CoderConfig("topk", X.shape[1], 8 * X.shape[1], k=32)
    start = time.perf_counter()
    coder, _ = train(cfg, TrainConfig(steps=steps, lr=lr, checkpoint_every=0), from_step, per_epoch)
    seconds = time.perf_counter() - start
    fvu, l0 = fvu_l0(coder.encode, coder.decode, H)
    return {"seconds": seconds, "fvu": fvu, "l0": l0}


def load(store: Path) -> tuple[np.ndarray, np.ndarray]:
    from cortexlens.store.documents import read_documents
    from cortexlens.store.reader import iter_activations

    docs = np.array(sorted(d.doc_id for d in read_documents(store, "minilm", "corpus")))
    held = np.random.default_rng(0).permutation(docs)[:round(0.1 * len(docs))]
    train_docs = np.setdiff1d(docs, held)
    point = ("resid_post", 3)
    X = np.concatenate([b[point] for b in iter_activations(store, "minilm", "corpus", point, docs=train_docs)])
    H = np.concatenate([b[point] for b in iter_activations(store, "minilm", "corpus", point, docs=held)])
    return np.ascontiguousarray(X), np.ascontiguousarray(H)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, default=ROOT / "data" / "store")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--lr", type=float, default=2e-3, help="SAELens's learning rate")
    parser.add_argument("--ours-lr", type=float, default=6e-3, help="ours (normalised units)")
    parser.add_argument("--saelens-side", nargs=2, metavar=("DATA", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.saelens_side:
        saelens_side(*args.saelens_side, args.steps, args.lr)
        return
    X, H = load(args.store)
    print(f"minilm layer 3 resid_post: {len(X):,} training rows, {len(H):,} held-out rows; TopK k=32, "
          f"{8 * X.shape[1]} latents, {args.steps} steps of {BATCH}")
    with tempfile.TemporaryDirectory() as tmp:
        np.save(Path(tmp) / "train.npy", X)
        np.save(Path(tmp) / "held.npy", H)
        python = ROOT / ".venv-saelens" / "bin" / "python"
        subprocess.run([str(python), __file__, "--steps", str(args.steps), "--lr", str(args.lr),
                        "--saelens-side", tmp, str(Path(tmp) / "saelens.json")], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        theirs = json.loads((Path(tmp) / "saelens.json").read_text())
    mine = ours(X, H, args.steps, args.ours_lr)
    tokens = args.steps * BATCH
    for name, r in (("cortexlens", mine), ("SAELens", theirs)):
        print(f"{name:>10}: {tokens / r['seconds']:8.0f} tokens/s  held-out FVU {r['fvu']:.4f}  L0 {r['l0']:.1f}")
    print(f"ratio (ours / SAELens tokens/s): {theirs['seconds'] / mine['seconds']:.2f}x; "
          f"FVU ours {mine['fvu']:.4f} vs {theirs['fvu']:.4f}")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
