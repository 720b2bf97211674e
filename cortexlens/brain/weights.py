"""Encoding weights saved for reuse: one safetensors file and a JSON per feature set.

    weights/<unit>.safetensors   per subject: <subject>/coef [d, N], /intercept [N], /alpha [N],
                                 /x_mean [d], /x_scale [d] (the z-scoring the fit used)
    weights/<unit>.json          model, init, features, hook_name, pooling; per subject its neuroids,
                                 rois and dataset

Predicted responses of new stimuli are X @ coef + intercept, X their pooled features in the features'
own units (the standardisation is folded into coef and intercept):

    from cortexlens.brain.weights import load_encoding_weights
    weights = load_encoding_weights("data/store/brain/minilm/weights/"
                                    "init=trained-features=activations-hook=resid_post-layer=1.safetensors")
    weights["sim01"].predict(X)     # [n, neuroids]
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from cortexlens.brain.plan import FeatureSet
    from cortexlens.brain.tables import Context, Scored


@dataclass(frozen=True)
class EncodingWeights:
    subject: str
    neuroids: list[str]
    rois: list[str]
    coef: np.ndarray  # [d, N]
    intercept: np.ndarray  # [N]
    alpha: np.ndarray  # [N]
    x_mean: np.ndarray  # [d]
    x_scale: np.ndarray  # [d]
    meta: dict[str, Any]

    def predict(self, X: np.ndarray) -> np.ndarray:
        """[n, d] pooled features -> [n, N] predicted responses."""
        return np.asarray(X, dtype=np.float32) @ self.coef + self.intercept


def weight_files(fs: FeatureSet, ctx: Context, scored: list[Scored]) -> dict[str, bytes]:
    """The files of one feature set (relative name -> bytes), for ResultWriter.write_unit."""
    from safetensors.numpy import save

    tensors: dict[str, np.ndarray] = {}
    meta: dict[str, Any] = {"model": ctx.model, "init": fs.init, "features": fs.features,
                            "features_model": fs.store_model, "hook_name": fs.point.name,
                            "pooling": ctx.dataset_pooling,
                            "prediction": "X @ coef + intercept (X: the pooled features, in their own units)",
                            "subjects": {}}
    for item in scored:
        name = item.subject.recording.subject
        for k, v in item.result.weights.items():
            tensors[f"{name}/{k}"] = np.ascontiguousarray(v)
        meta["subjects"][name] = {"neuroids": item.subject.recording.neuroids.tolist(),
                                  "rois": item.subject.recording.rois.tolist(), "dataset": item.subject.dataset}
    if not tensors:
        return {}
    return {f"weights/{fs.unit}.safetensors": save(tensors),
            f"weights/{fs.unit}.json": json.dumps(meta, indent=1).encode()}


def load_encoding_weights(path: Path | str) -> dict[str, EncodingWeights]:
    """subject -> its weights, from a weights/<unit>.safetensors file (its .json beside it)."""
    from safetensors.numpy import load_file

    path = Path(path)
    tensors = load_file(str(path))
    meta = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
    out = {}
    for subject, info in meta["subjects"].items():
        out[subject] = EncodingWeights(subject, info["neuroids"], info["rois"], tensors[f"{subject}/coef"],
                                       tensors[f"{subject}/intercept"], tensors[f"{subject}/alpha"],
                                       tensors[f"{subject}/x_mean"], tensors[f"{subject}/x_scale"],
                                       {k: v for k, v in meta.items() if k != "subjects"})
    return out
