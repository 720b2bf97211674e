"""The probe: standardise, then L2 logistic regression, its strength chosen by grouped inner CV.

A scikit-learn estimator, so `cross_val_score` can run it with the same folds (the parity test), and
everything fit inside a fold (the scaler's means and scales, the chosen C) sees that fold's training
rows only. The inner folds are grouped like the outer ones (by lexical item), so C is chosen for
generalising to unseen items, not to unseen sentences about seen items.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

DEFAULT_CS = (0.01, 0.1, 1.0)
TOLERANCE = 1e-7  # L-BFGS's gradient tolerance: converged, not stopped early (module docstring)
MAX_ITER = 2000  # the default study's probes converge within 472 iterations at TOLERANCE (MiniLM, C=1)


def logistic_pipeline(C: float, max_iter: int = MAX_ITER) -> Pipeline:
    """StandardScaler then LogisticRegression(C): the probe once its strength is fixed. Give it float64."""
    return make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter, tol=TOLERANCE))


class GroupedLogisticProbe(ClassifierMixin, BaseEstimator):
    """fit(X, y, groups): choose C by mean accuracy over `inner_folds` grouped folds of the training
    rows (ties: the smaller C, the stronger regularisation), then refit on all of them."""

    def __init__(self, Cs: Sequence[float] = DEFAULT_CS, inner_folds: int = 3, max_iter: int = MAX_ITER) -> None:
        self.Cs = Cs
        self.inner_folds = inner_folds
        self.max_iter = max_iter

    def fit(self, X: np.ndarray, y: np.ndarray, groups: np.ndarray | None = None) -> GroupedLogisticProbe:
        X, y = np.asarray(X, np.float64), np.asarray(y)  # [n, d]; float64: see the module docstring
        groups = np.arange(len(y)) if groups is None else np.asarray(groups)
        self.C_ = self._choose_C(X, y, groups)
        self.pipeline_ = logistic_pipeline(self.C_, self.max_iter).fit(X, y)
        self.classes_ = self.pipeline_.classes_
        return self

    def _choose_C(self, X: np.ndarray, y: np.ndarray, groups: np.ndarray) -> float:
        Cs = sorted(self.Cs)
        n_splits = min(self.inner_folds, len(np.unique(groups)))
        if len(Cs) == 1 or n_splits < 2:
            return Cs[0]
        scores = np.zeros(len(Cs))
        for train, test in StratifiedGroupKFold(n_splits=n_splits).split(X, y, groups):
            if len(np.unique(y[train])) < 2:  # a fold with one class cannot rank C
                continue
            for i, C in enumerate(Cs):
                scores[i] += logistic_pipeline(C, self.max_iter).fit(X[train], y[train]).score(X[test], y[test])
        return Cs[int(np.argmax(scores))]  # argmax takes the first (smallest C) of equal scores

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.pipeline_.predict(np.asarray(X, np.float64))

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self.pipeline_.predict_proba(np.asarray(X, np.float64))

    def direction(self) -> np.ndarray:
        """The probe's weights in the features' own basis (the scaler undone), one unit vector per
        class row: [n_classes or 1, d]. For a probe on the residual stream this is the direction the
        patching stage's subspace patching works in."""
        scaler, logistic = self.pipeline_[0], self.pipeline_[-1]
        raw = logistic.coef_ / scaler.scale_  # [rows, d]: the logit is raw @ (x - mean) + intercept
        norm = np.linalg.norm(raw, axis=1, keepdims=True)
        return np.divide(raw, norm, out=np.zeros_like(raw), where=norm > 0)  # a zero probe has no direction
