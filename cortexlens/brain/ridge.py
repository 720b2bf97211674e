"""Ridge regression with one regularisation strength per target, chosen by inner cross-validation (torch).

For training rows X [n, p] (centred inside every fit: an unpenalised intercept) and targets Y [n, T],
each target t gets the alpha of `alphas` that predicts it best on held-out rows:

* `kfold`: given inner splits (grouped ones keep a passage out of its own validation), per split the
  thin SVD X_tr = U S V^T (`Decomposition.of`), A = X_va V and B = U^T Y_tr; the validation prediction for alpha is
  A diag(s / (s^2 + alpha)) B. Scores are minus the mean squared error per split, averaged over splits
  (himalaya's RidgeCV, ties broken towards the larger alpha as there). One SVD and one U^T Y per split
  serve every alpha, so the cost is (n_tr + n_alphas * n_va) * k * T per split, k = min(n_tr, p),
  where himalaya forms n_alphas x n_va x n_tr resolution matrices first.
* `loo`: exact leave-one-out errors from one SVD (scikit-learn's `RidgeCV(alpha_per_target=True)` with
  its default GCV mode): e = (y_c - U diag(d) U^T y_c) / (1 - 1/n - sum_k U_ik^2 d_k), d = s^2 / (s^2 + alpha),
  the 1/n being the intercept's leverage; ties keep the first alpha, as there.

Predictions with the chosen alphas: `RidgeGeometry.predict` (never forms the p x T weights); `fit_weights`
gives weights and intercepts for reuse. Targets are processed in column blocks by the caller, so memory
is bounded by the block, not by the number of targets.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

Split = tuple[np.ndarray, np.ndarray]  # (train rows, validation rows)


@contextmanager
def one_thread() -> Iterator[None]:
    """torch on one thread for the block (restored after). LAPACK's eigh of a few hundred rows gains
    nothing from a second thread, and when other processes hold the cores, threads of small products
    wait on each other: eigh was 20x slower, a whole encoding 5x, on 2 busy cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@dataclass(frozen=True)
class Decomposition:
    """Centred training rows, decomposed once: everything a prediction for any alpha needs."""

    x_mean: torch.Tensor  # [p]
    U: torch.Tensor  # [n_tr, k]
    s: torch.Tensor  # [k]
    V: torch.Tensor  # [p, k]

    @classmethod
    def of(cls, X: torch.Tensor) -> Decomposition:
        """The thin SVD of X - mean(X), from the eigendecomposition of the smaller Gram matrix in float64
        (several times faster than an SVD on CPU at these sizes); directions with a singular value of
        (numerically) zero are dropped: ridge gives them no weight (s / (s^2 + alpha) = 0)."""
        x_mean = X.mean(0)
        Xc = (X - x_mean).double()
        n, p = Xc.shape
        gram = Xc @ Xc.T if n <= p else Xc.T @ Xc  # [min(n, p)] squared
        with one_thread():
            evals, evecs = torch.linalg.eigh(gram)
        keep = evals > evals.max().clamp(min=0) * 1e-12
        s = torch.sqrt(evals[keep])
        if n <= p:
            U = evecs[:, keep]
            V = (Xc.T @ U) / s
        else:
            V = evecs[:, keep]
            U = (Xc @ V) / s
        dtype = X.dtype
        return cls(x_mean, U.to(dtype), s.to(dtype), V.to(dtype))

    def gains(self, alpha: float) -> torch.Tensor:
        return self.s / (self.s ** 2 + alpha)  # [k]: ridge's shrinkage of each singular direction


@dataclass(frozen=True)
class InnerFold:
    train: torch.Tensor  # [n_tr] row indices (into the rows the selection sees)
    val: torch.Tensor  # [n_va]
    dec: Decomposition
    A: torch.Tensor  # [n_va, k]: the validation rows, centred by the training mean, in V's basis


class AlphaSelector:
    """Chooses an alpha per target on fixed rows X [n, p]; X-only work is done once, in __init__."""

    def __init__(self, X: torch.Tensor, alphas: Sequence[float], inner: str, splits: Sequence[Split] = ()) -> None:
        if inner not in ("kfold", "loo"):
            raise ValueError(f"inner must be 'kfold' or 'loo', got {inner!r}")
        if inner == "kfold" and len(splits) < 2:
            raise ValueError("k-fold alpha selection needs at least two inner splits")
        self.alphas = [float(a) for a in alphas]
        self.inner = inner
        self.n = X.shape[0]
        if inner == "loo":
            self.full = Decomposition.of(X)
            d = self._shrinkage(self.full)  # [n_alphas, k]
            # leverage of each row for each alpha, intercept included: [n_alphas, n]
            self.leverage = 1.0 / self.n + (self.full.U ** 2) @ d.T
            self.leverage = self.leverage.T
        else:
            self.folds = []
            for train, val in splits:
                tr = torch.as_tensor(train, device=X.device)
                va = torch.as_tensor(val, device=X.device)
                dec = Decomposition.of(X[tr])
                self.folds.append(InnerFold(tr, va, dec, (X[va] - dec.x_mean) @ dec.V))

    def _shrinkage(self, dec: Decomposition) -> torch.Tensor:
        s2 = dec.s ** 2
        return torch.stack([s2 / (s2 + a) for a in self.alphas])  # [n_alphas, k]

    def scores(self, Y: torch.Tensor) -> torch.Tensor:
        """[n_alphas, T] minus the held-out mean squared error of every alpha for every target (float64)."""
        return self._loo_scores(Y) if self.inner == "loo" else self._kfold_scores(Y)

    def select(self, Y: torch.Tensor) -> torch.Tensor:
        """[T] index into `alphas` of each target's best alpha."""
        scores = self.scores(Y)
        if self.inner == "kfold":  # himalaya: an epsilon slope prefers larger alphas among equal scores
            log_alphas = torch.log(torch.tensor(self.alphas, dtype=torch.float64, device=scores.device))
            return (scores + 1e-10 * log_alphas[:, None]).argmax(0)
        return _first_argmax(scores)  # scikit-learn keeps the earliest alpha unless a later one is better

    def _kfold_scores(self, Y: torch.Tensor) -> torch.Tensor:
        total = torch.zeros(len(self.alphas), Y.shape[1], dtype=torch.float64, device=Y.device)
        for fold in self.folds:
            y_tr, y_va = Y[fold.train], Y[fold.val]
            y_mean = y_tr.mean(0)
            B = fold.dec.U.T @ (y_tr - y_mean)  # [k, T]
            target = y_va - y_mean  # [n_va, T]
            for i, alpha in enumerate(self.alphas):
                predicted = (fold.A * fold.dec.gains(alpha)) @ B  # [n_va, T]
                total[i] -= ((target - predicted) ** 2).mean(0).double()
        return total / len(self.folds)

    def _loo_scores(self, Y: torch.Tensor) -> torch.Tensor:
        dec = self.full
        y_c = Y - Y.mean(0)
        B = dec.U.T @ y_c  # [k, T]
        d = self._shrinkage(dec)
        out = torch.empty(len(self.alphas), Y.shape[1], dtype=torch.float64, device=Y.device)
        for i in range(len(self.alphas)):
            residual = y_c - dec.U @ (d[i, :, None] * B)  # [n, T]
            loo = residual / (1.0 - self.leverage[i])[:, None]
            out[i] = -(loo ** 2).mean(0).double()
        return out


def _first_argmax(scores: torch.Tensor) -> torch.Tensor:
    """argmax over axis 0 taking the first of equal maxima (torch does not promise which)."""
    best = scores.max(0, keepdim=True).values
    first = torch.arange(scores.shape[0], device=scores.device)[:, None].expand_as(scores)
    return torch.where(scores == best, first, scores.shape[0]).min(0).values


class RidgeGeometry:
    """Training rows decomposed once; predictions for any targets with any per-target alphas."""

    def __init__(self, X_train: torch.Tensor, alphas: Sequence[float]) -> None:
        self.dec = Decomposition.of(X_train)
        self.alphas = [float(a) for a in alphas]

    def _per_alpha(self, alpha_index: torch.Tensor):
        for i in torch.unique(alpha_index).tolist():
            yield i, torch.nonzero(alpha_index == i).flatten()

    def predict(self, X_test: torch.Tensor, Y_train: torch.Tensor, alpha_index: torch.Tensor) -> torch.Tensor:
        """[n_test, T] predictions of the targets Y_train [n_tr, T], target t with alphas[alpha_index[t]].

        Through B = U^T Y ((n_tr + n_test) * k * T multiply-adds) or, when cheaper (few test rows, k near
        n_tr), through the n_test x n_tr matrix A diag(g) U^T of each alpha (n_test * n_tr * T)."""
        y_mean = Y_train.mean(0)
        Y_c = Y_train - y_mean
        A = (X_test - self.dec.x_mean) @ self.dec.V  # [n_test, k]
        n_test, (n_train, k) = X_test.shape[0], self.dec.U.shape
        out = torch.empty(n_test, Y_train.shape[1], dtype=Y_train.dtype, device=Y_train.device)
        if n_test * n_train < (n_train + n_test) * k:
            for i, cols in self._per_alpha(alpha_index):
                out[:, cols] = ((A * self.dec.gains(self.alphas[i])) @ self.dec.U.T) @ Y_c[:, cols]
        else:
            B = self.dec.U.T @ Y_c  # [k, T]
            for i, cols in self._per_alpha(alpha_index):
                out[:, cols] = (A * self.dec.gains(self.alphas[i])) @ B[:, cols]
        return out + y_mean

    def weights(self, Y_train: torch.Tensor, alpha_index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(coef [p, T], intercept [T]): prediction = X @ coef + intercept."""
        y_mean = Y_train.mean(0)
        B = self.dec.U.T @ (Y_train - y_mean)  # [k, T]
        coef = torch.empty(self.dec.V.shape[0], Y_train.shape[1], dtype=Y_train.dtype, device=Y_train.device)
        for i, cols in self._per_alpha(alpha_index):
            coef[:, cols] = (self.dec.V * self.dec.gains(self.alphas[i])) @ B[:, cols]
        return coef, y_mean - self.dec.x_mean @ coef


def pearson_columns(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """[T] Pearson r of each column pair of a, b [n, T]; 0 where either column is constant; within [-1, 1]
    (float32 rounding can otherwise put an exact copy a hair above 1)."""
    a = a - a.mean(0)
    b = b - b.mean(0)
    norm = torch.sqrt((a * a).sum(0) * (b * b).sum(0))
    r = (a * b).sum(0) / torch.where(norm > 0, norm, 1.0)
    return torch.where(norm > 0, r, torch.zeros_like(r)).clamp(-1.0, 1.0)
