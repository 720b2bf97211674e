"""Synthetic activations from a known dictionary: the SAE known-answer test's data.

x = sum over `active` atoms of c_i d_i + noise, atoms d_i unit-norm in `d` dimensions, c_i uniform in
[0.5, 1.5], the active set uniform per row; batch b of epoch e is drawn from default_rng((seed, e, b)),
so the stream is reproducible and resumable like the store's loader.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


def planted_dictionary(n_atoms: int = 512, d: int = 64, seed: int = 0) -> np.ndarray:
    """[n_atoms, d] unit rows."""
    atoms = np.random.default_rng(seed).standard_normal((n_atoms, d))
    return (atoms / np.linalg.norm(atoms, axis=1, keepdims=True)).astype(np.float32)


def planted_batch(atoms: np.ndarray, rows: int, rng: np.random.Generator, active: int = 5,
                  noise: float = 0.01) -> np.ndarray:
    """[rows, d] float32."""
    n_atoms, d = atoms.shape
    idx = np.argsort(rng.random((rows, n_atoms)), axis=1)[:, :active]  # [rows, active] distinct atoms
    coef = rng.uniform(0.5, 1.5, (rows, active))
    x = np.einsum("ra,rad->rd", coef, atoms[idx]) + noise * rng.standard_normal((rows, d))
    return x.astype(np.float32)


def planted_batches(atoms: np.ndarray, rows: int, per_epoch: int, seed: int = 0, **kw):
    """A `batches(epoch, start)` function for cortexlens.sae.train (y = x)."""
    def batches(epoch: int, start: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for b in range(start, per_epoch):
            x = planted_batch(atoms, rows, np.random.default_rng((seed, epoch, b)), **kw)
            yield x, x
    return batches


def recovered(atoms: np.ndarray, W_dec: np.ndarray, threshold: float = 0.9) -> float:
    """Fraction of atoms whose best-matching decoder row has cosine >= threshold."""
    dec = W_dec / np.maximum(np.linalg.norm(W_dec, axis=1, keepdims=True), 1e-12)
    return float(((atoms @ dec.T).max(axis=1) >= threshold).mean())
