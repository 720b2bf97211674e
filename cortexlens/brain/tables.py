"""The brain stage's result tables, from one feature set's encodings of every subject."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pyarrow as pa

from cortexlens.brain.encoding import EncodingResult
from cortexlens.brain.plan import FeatureSet
from cortexlens.brain.subjects import PreparedSubject
from cortexlens.brain.summary import Normalized, normalize, summarize


@dataclass(frozen=True)
class Scored:
    subject: PreparedSubject
    result: EncodingResult


@dataclass(frozen=True)
class Context:
    model: str  # the model under test (brain.models)
    dataset_pooling: str
    n_layers: int
    min_ceiling: float
    clip: bool


def _normalized(scored: Scored, ctx: Context) -> tuple[np.ndarray, Normalized]:
    n = len(scored.result.r)
    ceiling = scored.subject.ceiling.ceiling if scored.subject.ceiling is not None else np.full(n, np.nan)
    if scored.subject.ceiling is None:
        nan = np.full(n, np.nan)
        return ceiling, Normalized(nan, nan, np.full(n, "", dtype=object))
    return ceiling, normalize(scored.result.r, ceiling, ctx.min_ceiling, ctx.clip)


def _ids(fs: FeatureSet, ctx: Context, subject: PreparedSubject) -> dict:
    return {"model": ctx.model, "init": fs.init, "features": fs.features, "features_model": fs.store_model,
            "hook": fs.point.hook, "layer": fs.point.layer, "hook_name": fs.point.name, "pooling": ctx.dataset_pooling,
            "dataset": subject.dataset, "subject": subject.recording.subject}


def score_rows(fs: FeatureSet, ctx: Context, scored: list[Scored]) -> pa.Table:
    columns: dict[str, list] = {}
    for item in scored:
        rec, res = item.subject.recording, item.result
        ceiling, norm = _normalized(item, ctx)
        reliability = item.subject.ceiling.reliability if item.subject.ceiling is not None else ceiling
        n = len(res.r)
        block = {**{k: [v] * n for k, v in _ids(fs, ctx, item.subject).items()},
                 "roi": rec.rois.tolist(), "neuroid": rec.neuroids.tolist(), "r": res.r.tolist(),
                 "r_sd": res.r_folds.std(0, ddof=1).tolist() if len(res.r_folds) > 1 else [0.0] * n,
                 "ceiling": _nullable(ceiling), "reliability": _nullable(reliability),
                 "r_normalized": _nullable(norm.clipped), "r_normalized_unclipped": _nullable(norm.unclipped),
                 "clipped": norm.flag.tolist(), "alpha": res.alpha.tolist(),
                 "implied_r": _nullable(item.subject.implied_r if item.subject.implied_r is not None else np.full(n, np.nan)),
                 "n_stimuli": [len(rec.stimulus_ids)] * n, "n_train": [res.n_train] * n, "n_test": [res.n_test] * n}
        for k, v in block.items():
            columns.setdefault(k, []).extend(v)
    return pa.table(columns)


def layer_rows(fs: FeatureSet, ctx: Context, scored: list[Scored]) -> pa.Table:
    rows = []
    for item in scored:
        ceiling, norm = _normalized(item, ctx)
        safe_ceiling = np.where(np.isfinite(ceiling), ceiling, 0.0)
        for s in summarize(item.subject.recording.rois, item.result.r, item.result.null_r, safe_ceiling, norm, ctx.clip):
            row = {**_ids(fs, ctx, item.subject), **asdict(s)}
            if item.subject.ceiling is None:
                row["ceiling"] = None
            row["depth"] = (fs.point.layer + 1) / ctx.n_layers
            row["n_layers"] = ctx.n_layers
            rows.append({k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in row.items()})
    return pa.Table.from_pylist(rows)


def _nullable(values: np.ndarray) -> list:
    return [None if not np.isfinite(v) else float(v) for v in np.asarray(values, dtype=np.float64)]
