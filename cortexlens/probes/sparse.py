"""k-sparse probes (after Gurnee et al. 2023, "Finding Neurons in a Haystack"): logistic regression on
the k features whose class means differ most, chosen on the training rows only.

Meant for SAE latents, where a concept carried by a handful of latents is what a dictionary promises;
reported beside the dense probe of the same hook point and layer.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from cortexlens.probes.estimator import DEFAULT_CS, GroupedLogisticProbe


def top_k_features(X: np.ndarray, y: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k features with the largest spread of class means, in units of each feature's
    standard deviation (constant features never chosen): [k]."""
    scale = X.std(axis=0)
    means = np.stack([X[y == c].mean(axis=0) for c in np.unique(y)])  # [classes, d]
    spread = (means.max(axis=0) - means.min(axis=0)) / np.where(scale > 0, scale, np.inf)
    return np.sort(np.argsort(-spread, kind="stable")[:k])


class KSparseProbe(ClassifierMixin, BaseEstimator):
    def __init__(self, k: int = 8, Cs=DEFAULT_CS, inner_folds: int = 3) -> None:
        self.k = k
        self.Cs = Cs
        self.inner_folds = inner_folds

    def fit(self, X: np.ndarray, y: np.ndarray, groups: np.ndarray | None = None) -> KSparseProbe:
        self.features_ = top_k_features(np.asarray(X), np.asarray(y), self.k)
        self.probe_ = GroupedLogisticProbe(self.Cs, self.inner_folds).fit(np.asarray(X)[:, self.features_], y, groups)
        self.classes_, self.C_ = self.probe_.classes_, self.probe_.C_
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.probe_.predict(np.asarray(X)[:, self.features_])
