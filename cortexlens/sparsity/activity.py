"""How many MLP neurons are active per token (after "The Lazy Neuron Phenomenon", Li et al. 2023).

A neuron is active on a token when its activation (mlp_post: the nonlinearity's output; for gated
MLPs act(gate) * up, the input of the down projection) is nonzero for ReLU-family MLPs, where
inactive neurons are exactly zero, and when its magnitude exceeds a threshold stated per run for
GELU, SiLU and gated MLPs, whose outputs are rarely exactly zero. The fraction of active neurons is
computed per token and reported as a distribution (mean and quantiles over tokens), by position and
by how frequent the token is in the dataset.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ActivityRule:
    """When a neuron counts as active: exactly nonzero (ReLU) or |a| > threshold (everything else)."""

    exact_zero: bool
    threshold: float

    @property
    def label(self) -> str:
        return "nonzero" if self.exact_zero else f"abs>{self.threshold:g}"

    def active(self, acts: np.ndarray) -> np.ndarray:
        """[tokens, d_mlp] -> bool [tokens, d_mlp]."""
        return acts != 0 if self.exact_zero else np.abs(acts) > self.threshold


def rule_for(activation: str, threshold: float) -> ActivityRule:
    from cortexlens.models.families import is_relu

    return ActivityRule(exact_zero=is_relu(activation), threshold=0.0 if is_relu(activation) else threshold)


def active_counts(acts: np.ndarray, rule: ActivityRule) -> np.ndarray:
    """Neurons active on each token: [tokens] int64."""
    return rule.active(acts).sum(axis=1, dtype=np.int64)


def active_fractions(acts: np.ndarray, rule: ActivityRule) -> np.ndarray:
    """Fraction of neurons active on each token: [tokens] float64."""
    return active_counts(acts, rule) / acts.shape[1]


class FractionStats:
    """Per-token active counts, gathered batch by batch (3 ints per token), then summarised as
    fractions of the width: mean and quantiles over tokens, means by position and by token-frequency
    bucket. Means are taken as total active / (tokens x width), so a planted fraction comes out exact."""

    def __init__(self, max_positions: int, frequency_buckets: int) -> None:
        self.max_positions = max_positions
        self.frequency_buckets = frequency_buckets
        self.width = 0
        self._counts: list[np.ndarray] = []
        self._positions: list[np.ndarray] = []
        self._token_ids: list[np.ndarray] = []

    def add(self, counts: np.ndarray, width: int, positions: np.ndarray, token_ids: np.ndarray) -> None:
        self.width = width
        self._counts.append(counts.astype(np.int64))
        self._positions.append(positions.astype(np.int64))
        self._token_ids.append(token_ids.astype(np.int64))

    def _mean(self, counts: np.ndarray) -> float:
        return float(counts.sum() / (len(counts) * self.width))

    def rows(self, quantiles: Sequence[float]) -> list[tuple[str, str, float]]:
        """(metric, param, value) rows."""
        counts = np.concatenate(self._counts)
        pos = np.concatenate(self._positions)
        bucket = frequency_buckets(np.concatenate(self._token_ids), self.frequency_buckets)
        out = [("active_fraction", "mean", self._mean(counts))]
        out += [("active_fraction", f"q{round(q * 100):02d}", float(np.quantile(counts, q) / self.width))
                for q in quantiles]
        for p in range(min(self.max_positions, int(pos.max()) + 1)):
            if (pos == p).any():
                out.append(("active_fraction_by_position", f"pos={p}", self._mean(counts[pos == p])))
        for b in range(self.frequency_buckets):
            if (bucket == b).any():
                out.append(("active_fraction_by_frequency", f"bucket={b}", self._mean(counts[bucket == b])))
        return out


def frequency_buckets(token_ids: np.ndarray, n_buckets: int) -> np.ndarray:
    """Bucket of each token occurrence by its token's frequency in `token_ids`: 0 holds the rarest
    tokens, n_buckets - 1 the most frequent. Occurrences are ranked by their token's frequency and the
    ranks split into equal parts; every occurrence of a token goes to the bucket of the token's mean
    rank, so a token never straddles two buckets and each holds about the same number of tokens."""
    ids, inverse, counts = np.unique(token_ids, return_inverse=True, return_counts=True)
    order = np.lexsort((ids, counts))  # tokens, rarest first (ties by id)
    first_rank = np.empty(len(ids), np.int64)
    first_rank[order] = np.concatenate([[0], np.cumsum(counts[order])[:-1]])
    mean_rank = first_rank + (counts - 1) / 2  # [distinct tokens]
    bucket = np.minimum((mean_rank * n_buckets / max(len(token_ids), 1)).astype(np.int64), n_buckets - 1)
    return bucket[inverse]
