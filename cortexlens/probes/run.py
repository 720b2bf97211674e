"""Fit one concept's probes: every (hook point, layer, pooling or position), in parallel processes.

Each job cross-validates the probe on the real labels and (optionally) on control labels with the same
folds, then fits it once more on every example: the weights saved and registered are that last fit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from joblib import Parallel, delayed

from cortexlens.probes.control import control_labels
from cortexlens.probes.cv import FoldScores, grouped_cv
from cortexlens.probes.estimator import GroupedLogisticProbe


@dataclass(frozen=True)
class ProbeSettings:
    Cs: tuple[float, ...]
    folds: int
    inner_folds: int
    control: bool
    seed: int

    def make_probe(self) -> GroupedLogisticProbe:
        return GroupedLogisticProbe(self.Cs, self.inner_folds)

    def maker(self, probe: str):
        """`logistic`, or `ksparse-<k>` (a k-sparse probe, for SAE latents)."""
        if probe == "logistic":
            return self.make_probe
        from cortexlens.probes.sparse import KSparseProbe

        k = int(probe.split("-", 1)[1])
        return lambda: KSparseProbe(k, self.Cs, self.inner_folds)


@dataclass(frozen=True)
class ProbeJob:
    hook: str
    layer: int
    pooling: str  # mean | first | last, or pos=<p> for a token-level probe
    X: np.ndarray  # [n, d] float32
    y: np.ndarray  # [n] class labels
    groups: np.ndarray  # [n] lexical items
    probe: str = "logistic"  # or ksparse-<k>
    features: str = "activations"  # or sae:<sae_id>


@dataclass(frozen=True)
class ProbeOutcome:
    hook: str
    layer: int
    pooling: str
    scores: FoldScores
    control: FoldScores | None
    final: GroupedLogisticProbe  # fit on every example
    probe: str = "logistic"
    features: str = "activations"


def fit_job(job: ProbeJob, settings: ProbeSettings) -> ProbeOutcome:
    make = settings.maker(job.probe)
    scores = grouped_cv(make, job.X, job.y, job.groups, settings.folds)
    control = None
    if settings.control:
        shuffled = control_labels(job.y, job.groups, settings.seed)
        control = grouped_cv(make, job.X, shuffled, job.groups, settings.folds)
    final = make().fit(job.X, job.y, job.groups)
    return ProbeOutcome(job.hook, job.layer, job.pooling, scores, control, final, job.probe, job.features)


def fit_jobs(jobs: Sequence[ProbeJob], settings: ProbeSettings, n_jobs: int = 1) -> list[ProbeOutcome]:
    """In job order. Worker processes get one BLAS thread each (the jobs are the parallelism)."""
    if n_jobs == 1 or len(jobs) == 1:
        return [fit_job(job, settings) for job in jobs]
    return Parallel(n_jobs=n_jobs, backend="loky", inner_max_num_threads=1)(
        delayed(fit_job)(job, settings) for job in jobs)


def select_examples(labels: Sequence[dict[str, str]], label: str, group: str | None, where: dict[str, str],
                    max_examples: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row indices, classes, groups) of the documents a concept uses, class-balanced and at most
    `max_examples` (a seeded sample); ValueError naming what is wrong with the data."""
    keep = [i for i, doc in enumerate(labels) if all(doc.get(k) == v for k, v in where.items())]
    if not keep:
        raise ValueError(f"no document matches {where}")
    missing = [i for i in keep if label not in labels[i]]
    if missing:
        known = sorted({k for i in keep for k in labels[i]})
        raise ValueError(f"label {label!r} is missing from {len(missing)} of {len(keep)} documents "
                         f"(labels: {', '.join(known) or 'none'})")
    y = np.array([labels[i][label] for i in keep])
    classes = np.unique(y)
    if len(classes) < 2:
        raise ValueError(f"label {label!r} has one class only ({str(classes[0])!r}); a probe needs two")
    if group is not None and any(group not in labels[i] for i in keep):
        raise ValueError(f"group label {group!r} is missing from some documents")
    rng = np.random.default_rng(seed)
    per_class = max(1, max_examples // len(classes))
    chosen = np.sort(np.concatenate([rng.permutation(np.flatnonzero(y == c))[:per_class] for c in classes]))
    rows = np.asarray(keep)[chosen]
    groups = np.array([labels[i][group] for i in rows]) if group is not None else rows.astype(str)
    return rows, y[chosen], groups
