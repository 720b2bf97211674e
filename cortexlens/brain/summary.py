"""From per-neuroid r and ceilings to normalised scores and per-ROI summaries with permutation p-values.

Per neuroid: r_normalized = r / ceiling where the ceiling is at least `min_ceiling` (else NULL: the
neuroid is too unreliable to normalise). Values outside [0, 1] are clipped, as Brain-Score does, and
the clipping is recorded: `r_normalized_unclipped` keeps the ratio and `clipped` says `above`, `below`
or is empty. Per ROI (and over every neuroid, roi `all`, when there are several ROIs): the median r, the
median ceiling, the median of the unclipped normalised scores (clipped afterwards; clipping is monotone,
so this is also the median of the clipped values), and p = (1 + #{null medians >= observed median}) /
(1 + n_permutations), the null medians being the same median of r over the ROI's neuroids under each
within-group permutation of the responses.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ALL_ROIS = "all"


@dataclass(frozen=True)
class Normalized:
    unclipped: np.ndarray  # [N] r / ceiling, NaN where the ceiling is below min_ceiling
    clipped: np.ndarray  # [N] in [0, 1] (NaN where unreliable)
    flag: np.ndarray  # [N] "above" | "below" | ""


def normalize(r: np.ndarray, ceiling: np.ndarray, min_ceiling: float, clip: bool = True) -> Normalized:
    reliable = ceiling >= min_ceiling
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(reliable, r / np.where(reliable, ceiling, 1.0), np.nan)
    if not clip:
        return Normalized(ratio, ratio.copy(), np.full(len(r), "", dtype=object))
    flag = np.where(ratio > 1, "above", np.where(ratio < 0, "below", "")).astype(object)
    return Normalized(ratio, np.clip(ratio, 0.0, 1.0), flag)


@dataclass(frozen=True)
class RoiSummary:
    roi: str
    n_neuroids: int
    n_reliable: int
    r: float  # median over the ROI's neuroids
    r_mean: float
    ceiling: float  # median ceiling
    r_normalized: float  # median normalised score, clipped into [0, 1] when clipping is on
    r_normalized_unclipped: float
    clipped: str  # whether the median itself was clipped: above | below | ""
    n_clipped: int  # neuroids whose own score was clipped
    p_value: float | None  # None without permutations
    null_r_q95: float | None  # 95th percentile of the null medians of r
    null_normalized_q95: float | None  # the same in normalised units (null r / ceiling, median)
    n_permutations: int


def summarize(rois: np.ndarray, r: np.ndarray, null_r: np.ndarray, ceiling: np.ndarray, norm: Normalized,
              clip: bool = True) -> list[RoiSummary]:
    """rois [N], r [N], null_r [K, N], ceiling [N] -> one summary per ROI (+ `all` when several)."""
    names = list(dict.fromkeys(rois.tolist()))
    groups = [(name, rois == name) for name in names]
    if len(names) > 1:
        groups.append((ALL_ROIS, np.ones(len(rois), dtype=bool)))
    return [_summary(name, mask, r, null_r, ceiling, norm, clip) for name, mask in groups]


def _summary(name: str, mask: np.ndarray, r: np.ndarray, null_r: np.ndarray, ceiling: np.ndarray,
             norm: Normalized, clip: bool) -> RoiSummary:
    reliable = mask & np.isfinite(norm.unclipped)
    median_r = float(np.median(r[mask]))
    unclipped = float(np.median(norm.unclipped[reliable])) if reliable.any() else float("nan")
    value, flag = unclipped, ""
    if clip and np.isfinite(unclipped):
        value = min(max(unclipped, 0.0), 1.0)
        flag = "above" if unclipped > 1 else "below" if unclipped < 0 else ""
    p = q95 = q95_norm = None
    n_permutations = null_r.shape[0]
    if n_permutations:
        null_medians = np.median(null_r[:, mask], axis=1)  # [K]
        p = float((1 + np.sum(null_medians >= median_r)) / (1 + n_permutations))
        q95 = float(np.quantile(null_medians, 0.95))
        if reliable.any():
            q95_norm = float(np.quantile(np.median(null_r[:, reliable] / ceiling[reliable], axis=1), 0.95))
    return RoiSummary(name, int(mask.sum()), int(reliable.sum()), median_r, float(np.mean(r[mask])),
                      float(np.median(ceiling[mask])), value, unclipped, flag,
                      int(np.sum(norm.flag[mask] != "")), p, q95, q95_norm, n_permutations)
