"""Cross-validated probe accuracy with outer folds grouped by lexical item.

No group (entity, adjective, template) is in both the training and the test rows of a fold, so a
probe is scored on items it never saw; within that constraint, folds keep the classes' proportions
(StratifiedGroupKFold, deterministic): a probe that memorises items scores high on ungrouped folds and
at its honest level here (tests/unit/test_probes.py shows the difference on a leaking dataset).
Equals `sklearn.model_selection.cross_val_score(probe, X, y, groups=g, cv=StratifiedGroupKFold(k),
params={"groups": g})` exactly (the parity test).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from sklearn.base import ClassifierMixin
from sklearn.model_selection import StratifiedGroupKFold


@dataclass(frozen=True)
class FoldScores:
    accuracies: list[float]  # one per outer fold
    n_train: int  # rows a probe was trained on (mean over folds, rounded)
    n_test: int  # rows it was scored on (mean over folds, rounded)
    Cs: list[float]  # the regularisation each fold's inner CV chose

    @property
    def accuracy(self) -> float:
        return float(np.mean(self.accuracies))

    @property
    def accuracy_sd(self) -> float:
        return float(np.std(self.accuracies, ddof=1)) if len(self.accuracies) > 1 else 0.0


def n_splits(groups: np.ndarray, folds: int) -> int:
    return min(folds, len(np.unique(groups)))


def grouped_cv(make_probe: Callable[[], ClassifierMixin], X: np.ndarray, y: np.ndarray, groups: np.ndarray,
               folds: int = 5) -> FoldScores:
    """Accuracy of a fresh probe per outer fold. X [n, d], y [n], groups [n]."""
    accuracies, n_train, n_test, Cs = [], [], [], []
    for train, test in StratifiedGroupKFold(n_splits=n_splits(groups, folds)).split(X, y, groups):
        probe = make_probe().fit(X[train], y[train], groups[train])
        accuracies.append(float(probe.score(X[test], y[test])))
        n_train.append(len(train))
        n_test.append(len(test))
        Cs.append(float(getattr(probe, "C_", np.nan)))
    return FoldScores(accuracies, round(float(np.mean(n_train))), round(float(np.mean(n_test))), Cs)
