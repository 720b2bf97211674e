"""Noise ceilings per neuroid from split-half reliability across repetitions, Spearman-Brown corrected.

For a split of the R repetitions into halves A and B (the same split for every stimulus), each half's
mean response per stimulus gives r_AB per neuroid, the Pearson r over stimuli. Averaged over `n_splits`
splits (every distinct split when there are fewer), the Spearman-Brown formula for doubling the data,
rho = 2 r / (1 + r), estimates the reliability of the mean of all R repetitions: the correlation of two
independent R-repetition means. A model that predicted the noiseless response exactly would correlate
with the observed mean at sqrt(rho) (the observed mean is signal plus noise of variance
(1 - rho) / rho times the signal's), so the ceiling of r is sqrt(rho), 0 where rho <= 0.

Missing presentations are NaN: a half mean uses what it has, and each neuroid's r_AB uses the stimuli
whose two halves both have data. With unequal halves (R odd) the doubling is an approximation.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np


@dataclass(frozen=True)
class Ceiling:
    split_half_r: np.ndarray  # [N] mean split-half r
    reliability: np.ndarray  # [N] Spearman-Brown corrected: reliability of the R-repetition mean
    ceiling: np.ndarray  # [N] sqrt(max(reliability, 0)): the highest r a model can reach
    n_splits: int


def half_splits(n_repetitions: int, n_splits: int, seed: int) -> list[np.ndarray]:
    """Repetition indices of half A for each split: all distinct splits (A and its complement counted
    once) when there are at most n_splits, else n_splits seeded random ones."""
    half = n_repetitions // 2
    if n_repetitions < 2:
        raise ValueError(f"a split-half ceiling needs at least 2 repetitions, got {n_repetitions}")
    distinct = [np.array(c) for c in combinations(range(n_repetitions), half)
                if 2 * half < n_repetitions or 0 in c]  # even R: {A, B} and {B, A} are one split
    if len(distinct) <= n_splits:
        return distinct
    rng = np.random.default_rng(seed)
    return [np.sort(rng.permutation(n_repetitions)[:half]) for _ in range(n_splits)]


def split_half_ceiling(values: np.ndarray, n_splits: int = 100, seed: int = 0) -> Ceiling:
    """values [n_stimuli, R, N] (NaN: not presented) -> the ceiling of every neuroid."""
    _, n_repetitions, n_neuroids = values.shape
    splits = half_splits(n_repetitions, n_splits, seed)
    rs = np.empty((len(splits), n_neuroids))
    for i, a in enumerate(splits):
        b = np.setdiff1d(np.arange(n_repetitions), a)
        rs[i] = _masked_pearson(_nanmean(values[:, a]), _nanmean(values[:, b]))
    r = rs.mean(0)
    reliability = 2 * r / (1 + r)
    return Ceiling(r, reliability, np.sqrt(np.clip(reliability, 0, None)), len(splits))


def _nanmean(block: np.ndarray) -> np.ndarray:
    """[n_stimuli, k, N] -> [n_stimuli, N], NaN where no repetition of the half was presented."""
    count = np.sum(~np.isnan(block), axis=1)
    total = np.nansum(block, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _masked_pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[N] Pearson r over the rows where both a and b [n, N] are finite; 0 for a constant column."""
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = np.where(keep, a, 0.0), np.where(keep, b, 0.0)
    n = np.maximum(keep.sum(0), 1)
    a_c = np.where(keep, a - a.sum(0) / n, 0.0)
    b_c = np.where(keep, b - b.sum(0) / n, 0.0)
    norm = np.sqrt((a_c ** 2).sum(0) * (b_c ** 2).sum(0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(norm > 0, (a_c * b_c).sum(0) / np.where(norm > 0, norm, 1), 0.0)
