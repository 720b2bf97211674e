"""The pinned metrics of a sparse coder, accumulated over batches of the evaluation set.

* FVU = sum_t ||y_t - y_hat_t||^2 / sum_t ||y_t - mean(y)||^2, sums over every evaluation token t and
  every dimension; mean(y) is the evaluation set's mean vector. Explained variance EV = 1 - FVU.
  (Not the mean of per-token ratios, nor per-dimension variance ratios averaged: one ratio of sums.)
* L0 = mean over tokens of the number of nonzero latents.
* dead fraction: latents that are nonzero on none of the evaluation tokens (the last N the set holds).
* dense fraction: latents nonzero on more than `dense_threshold` (default 10%) of the tokens.

Sums run in float64, so the order of batches changes nothing beyond rounding.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

DENSE_THRESHOLD = 0.1


@dataclass(frozen=True)
class CoderMetrics:
    fvu: float
    explained_variance: float
    l0: float
    dead_frac: float
    dense_frac: float
    tokens: int
    mse: float  # mean over tokens of ||y - y_hat||^2

    def as_dict(self) -> dict[str, float]:
        return {"fvu": self.fvu, "explained_variance": self.explained_variance, "l0": self.l0,
                "dead_frac": self.dead_frac, "dense_frac": self.dense_frac, "tokens": self.tokens, "mse": self.mse}


class MetricAccumulator:
    def __init__(self, d_sae: int, dense_threshold: float = DENSE_THRESHOLD) -> None:
        self.dense_threshold = dense_threshold
        self.n = 0
        self.sq_err = 0.0
        self.sum_y: torch.Tensor | None = None  # [d_out] float64
        self.sum_sq = 0.0  # sum ||y||^2
        self.active = 0.0  # sum of L0 over tokens
        self.fires = torch.zeros(d_sae, dtype=torch.float64)  # [d_sae]: tokens each latent fired on

    def update(self, y: torch.Tensor, y_hat: torch.Tensor, f: torch.Tensor) -> None:
        """y, y_hat [n, d_out]; f [n, d_sae]."""
        y64, diff = y.double(), (y - y_hat).double()
        self.n += y.shape[0]
        self.sq_err += float((diff ** 2).sum())
        s = y64.sum(0)
        self.sum_y = s if self.sum_y is None else self.sum_y + s
        self.sum_sq += float((y64 ** 2).sum())
        nz = f != 0  # [n, d_sae]
        self.active += float(nz.sum())
        self.fires += nz.sum(0).double()

    def result(self) -> CoderMetrics:
        if self.n == 0 or self.sum_y is None:
            raise ValueError("no evaluation tokens")
        total = self.sum_sq - float((self.sum_y ** 2).sum()) / self.n  # sum ||y - mean||^2
        fvu = self.sq_err / total if total > 0 else float("nan")
        rate = self.fires / self.n
        return CoderMetrics(fvu=fvu, explained_variance=1 - fvu, l0=self.active / self.n,
                            dead_frac=float((self.fires == 0).double().mean()),
                            dense_frac=float((rate > self.dense_threshold).double().mean()),
                            tokens=self.n, mse=self.sq_err / self.n)


def fvu(y: torch.Tensor, y_hat: torch.Tensor) -> float:
    """FVU of one batch: y, y_hat [n, d]."""
    y, y_hat = y.double(), y_hat.double()
    return float(((y - y_hat) ** 2).sum() / ((y - y.mean(0)) ** 2).sum())


def loss_recovered(ce_clean: float, ce_zero: float, ce_spliced: float) -> float:
    """(CE_zero_ablation - CE_spliced) / (CE_zero_ablation - CE_clean): 1 = as good as the model, 0 = as bad
    as zeroing the hook point."""
    gap = ce_zero - ce_clean
    return (ce_zero - ce_spliced) / gap if gap != 0 else float("nan")
