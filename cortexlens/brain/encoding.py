"""Cross-validated encoding models: features of stimuli -> every neuroid's response, scored by held-out r.

For features X [n, p] of n stimuli, mean responses Y [n, N] and each stimulus's group (its passage):

1. Outer folds: `GroupKFold(folds, shuffle=True)` over groups, so no passage is in both training and test.
2. Per fold, features are standardised with the training rows' mean and sd; each neuroid's ridge alpha
   is chosen on the training rows alone (`ridge.AlphaSelector`: inner folds grouped the same way, or
   exact leave-one-out), the model refit on all training rows, and the test rows predicted.
3. r per neuroid = Pearson r of prediction and response over a fold's test rows, averaged over folds
   (as Brain-Score does); r_sd is its spread over folds.
4. Permutation null: the responses' rows are permuted within groups (`n_permutations` seeded
   permutations, the same for every neuroid, so neuroids keep their correlations; across all stimuli
   when no stimulus shares a group) and run through the
   same folds. With `null="refit"` each permuted target chooses its own alpha by the same inner CV (the
   exact permutation test of the whole procedure); `"fixed_alpha"` reuses the real neuroid's alpha
   (cheaper by the inner CV's cost). Permuted targets are solved as extra columns of the same
   decompositions, in blocks of at most `target_batch` columns.
5. Weights for reuse: refit on every stimulus with alphas chosen by inner CV on every stimulus.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from sklearn.model_selection import GroupKFold

from cortexlens.brain.ridge import AlphaSelector, RidgeGeometry, Split, one_thread, pearson_columns

DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass(frozen=True)
class EncodingSettings:
    alphas: tuple[float, ...] = tuple(float(a) for a in np.logspace(-1, 6, 8))
    folds: int = 5
    inner: str = "group_kfold"  # or "loo" (exact leave-one-out, scikit-learn's RidgeCV)
    inner_folds: int = 3
    standardize: bool = True
    n_permutations: int = 100
    null: str = "refit"  # or "fixed_alpha"
    seed: int = 0
    dtype: str = "float32"
    target_batch: int = 16384
    weights: bool = True


@dataclass
class EncodingResult:
    r: np.ndarray  # [N] held-out r, mean over outer folds
    r_folds: np.ndarray  # [folds, N]
    null_r: np.ndarray  # [n_permutations, N] the same statistic on permuted responses
    alpha: np.ndarray  # [N] alpha of the final fit on every stimulus
    fold_alphas: np.ndarray  # [folds, N] alpha each outer fold's inner CV chose
    n_train: int  # mean training rows per fold (rounded)
    n_test: int
    weights: dict[str, np.ndarray] = field(default_factory=dict)  # coef [p, N], intercept [N], x_mean, x_scale


def grouped_splits(groups: np.ndarray, folds: int, seed: int) -> list[Split]:
    """K folds over groups (shuffled, seeded); fewer when there are fewer groups than folds."""
    n_groups = len(np.unique(groups))
    if n_groups < 2:
        raise ValueError(f"cross-validation needs at least 2 groups of stimuli, got {n_groups}")
    splitter = GroupKFold(n_splits=min(folds, n_groups), shuffle=True, random_state=seed)
    return [(train, test) for train, test in splitter.split(np.zeros(len(groups)), groups=groups)]


def within_group_permutations(groups: np.ndarray, n_permutations: int, seed: int) -> np.ndarray:
    """[n_permutations, n] row orders: each permutes rows only among rows of the same group; across all
    rows when every group is a single stimulus (stimuli without groups), which no permutation could move."""
    rng = np.random.default_rng(seed)
    members = [np.flatnonzero(groups == g) for g in np.unique(groups)]
    if max(len(rows) for rows in members) == 1:
        members = [np.arange(len(groups))]
    out = np.empty((n_permutations, len(groups)), dtype=np.int64)
    for k in range(n_permutations):
        for rows in members:
            out[k, rows] = rows[rng.permutation(len(rows))]
    return out


def standardized(X_train: np.ndarray, X_other: np.ndarray | None, on: bool) -> tuple[np.ndarray, ...]:
    """(train, other, mean, scale): z-scored with the training rows' statistics (scale 1 for constants)."""
    mean = X_train.mean(0) if on else np.zeros(X_train.shape[1])
    sd = X_train.std(0) if on else np.ones(X_train.shape[1])
    scale = np.where(sd > 0, sd, 1.0)
    other = None if X_other is None else (X_other - mean) / scale
    return (X_train - mean) / scale, other, mean, scale


@dataclass
class _Fold:
    train: np.ndarray
    test: np.ndarray
    X_test: torch.Tensor
    selector: AlphaSelector
    geometry: RidgeGeometry


class Encoder:
    """The X-only work of an encoding model (fold decompositions), reusable for any responses."""

    def __init__(self, X: np.ndarray, groups: np.ndarray, settings: EncodingSettings) -> None:
        self.settings = settings
        self.dtype = DTYPES[settings.dtype]
        self.X = np.asarray(X, dtype=np.float64)
        self.groups = np.asarray(groups)
        self.splits = grouped_splits(self.groups, settings.folds, settings.seed)
        self.folds = [self._fold(train, test) for train, test in self.splits]

    def _tensor(self, a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.ascontiguousarray(a), dtype=self.dtype)

    def _selector(self, X: torch.Tensor, groups: np.ndarray) -> AlphaSelector:
        s = self.settings
        if s.inner == "loo":
            return AlphaSelector(X, s.alphas, "loo")
        return AlphaSelector(X, s.alphas, "kfold", grouped_splits(groups, s.inner_folds, s.seed + 1))

    def _fold(self, train: np.ndarray, test: np.ndarray) -> _Fold:
        X_train, X_test, _, _ = standardized(self.X[train], self.X[test], self.settings.standardize)
        X_train_t = self._tensor(X_train)
        return _Fold(train, test, self._tensor(X_test), self._selector(X_train_t, self.groups[train]),
                     RidgeGeometry(X_train_t, self.settings.alphas))

    def run(self, Y: np.ndarray, progress: Callable[[int], None] | None = None) -> EncodingResult:
        """Y [n, N] mean responses -> held-out r per neuroid, its null, alphas and (optionally) weights."""
        s = self.settings
        n_neuroids = Y.shape[1]
        perms = within_group_permutations(self.groups, s.n_permutations, s.seed + 2)
        copies = 1 + s.n_permutations
        block = max(1, s.target_batch // copies)  # neuroids per block, with their permuted copies
        r_folds = np.empty((len(self.folds), copies, n_neuroids))
        fold_alphas = np.empty((len(self.folds), n_neuroids))
        for start in range(0, n_neuroids, block):
            cols = slice(start, min(start + block, n_neuroids))
            Y_block = Y[:, cols]
            stacked = np.concatenate([Y_block] + [Y_block[p] for p in perms], axis=1)  # [n, copies * c]
            Y_t = self._tensor(stacked)
            for f, fold in enumerate(self.folds):
                r, alphas = self._fold_scores(fold, Y_t, Y_block.shape[1], copies)
                r_folds[f, :, cols] = r
                fold_alphas[f, cols] = alphas
                if progress is not None:
                    progress(1)
        r_mean = r_folds.mean(0)  # [copies, N]
        alpha, weights = self._final_fit(Y)
        return EncodingResult(r_mean[0], r_folds[:, 0], r_mean[1:], alpha, fold_alphas,
                              round(float(np.mean([len(f.train) for f in self.folds]))),
                              round(float(np.mean([len(f.test) for f in self.folds]))), weights)

    def n_steps(self, n_neuroids: int) -> int:
        """Progress steps `run` reports for N neuroids (blocks x folds)."""
        block = max(1, self.settings.target_batch // (1 + self.settings.n_permutations))
        return -(-n_neuroids // block) * len(self.folds)

    def _fold_scores(self, fold: _Fold, Y: torch.Tensor, c: int, copies: int) -> tuple[np.ndarray, np.ndarray]:
        """r [copies, c] of one outer fold, and the real neuroids' alphas [c]."""
        Y_train, Y_test = Y[fold.train], Y[fold.test]
        if self.settings.null == "refit":
            index = fold.selector.select(Y_train)
        else:  # the real neuroid's alpha for each of its permuted copies
            index = fold.selector.select(Y_train[:, :c]).repeat(copies)
        predicted = fold.geometry.predict(fold.X_test, Y_train, index)
        r = pearson_columns(predicted, Y_test).double().cpu().numpy().reshape(copies, c)
        alphas = np.asarray(self.settings.alphas)[index[:c].cpu().numpy()]
        return r, alphas

    def _final_fit(self, Y: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        s = self.settings
        X_all, _, mean, scale = standardized(self.X, None, s.standardize)
        X_t, Y_t = self._tensor(X_all), self._tensor(Y)
        index = self._selector(X_t, self.groups).select(Y_t)
        alpha = np.asarray(s.alphas)[index.cpu().numpy()]
        if not s.weights:
            return alpha, {}
        coef, intercept = RidgeGeometry(X_t, s.alphas).weights(Y_t, index)
        # in the features' own units: prediction = X @ coef + intercept
        coef_raw = coef.double().cpu().numpy() / scale[:, None]
        return alpha, {"coef": coef_raw.astype(np.float32),
                       "intercept": (intercept.double().cpu().numpy() - mean @ coef_raw).astype(np.float32),
                       "x_mean": mean.astype(np.float32), "x_scale": scale.astype(np.float32),
                       "alpha": alpha.astype(np.float32)}


def encode(X: np.ndarray, Y: np.ndarray, groups: np.ndarray, settings: EncodingSettings) -> EncodingResult:
    """One call: features X [n, p], mean responses Y [n, N], groups [n] -> EncodingResult (on one thread)."""
    with one_thread():
        return Encoder(X, groups, settings).run(Y)


@dataclass(frozen=True)
class EncodingJob:
    """One feature space against several subjects: X[i] [n_i, p] and Y[i] [n_i, N_i] of subject i."""

    key: str
    X: list[np.ndarray]
    Y: list[np.ndarray]
    groups: list[np.ndarray]


def run_job(job: EncodingJob, settings: EncodingSettings) -> tuple[str, list[EncodingResult]]:
    return job.key, [encode(X, Y, g, settings) for X, Y, g in zip(job.X, job.Y, job.groups)]


def run_jobs(jobs: list[EncodingJob], settings: EncodingSettings, n_jobs: int = 1
             ) -> Iterator[tuple[str, list[EncodingResult]]]:
    """Each job's results, in job order, as they finish. With n_jobs > 1 the jobs run in worker processes
    (joblib's loky), one BLAS thread each: encoding is many small products, which a second thread speeds
    up little and which slow down badly when other processes hold the cores."""
    if n_jobs == 1 or len(jobs) <= 1:
        for job in jobs:
            yield run_job(job, settings)
        return
    from joblib import Parallel, delayed

    parallel = Parallel(n_jobs=n_jobs, backend="loky", inner_max_num_threads=1, return_as="generator")
    yield from parallel(delayed(run_job)(job, settings) for job in jobs)
