"""Probe weights as portable files: one safetensors file per concept, and cfg.json describing it.

For each probe (hook point, layer, pooling) the file holds, under `<hook_name>/<pooling>/`:
    coef [rows, d], intercept [rows]   the logistic regression on standardised features
    mean [d], scale [d]                the standardisation (x - mean) / scale
    direction [rows, d]                coef / scale, unit norm: the probe's direction in the
                                       activations' own basis (rows: 1 for two classes, else one per class)
so `logits = ((x - mean) / scale) @ coef.T + intercept`, and the patching stage can take `direction` as
a subspace of the residual stream. Nothing is pickled.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
from safetensors.numpy import save

from cortexlens.models.hooks import HookPoint
from cortexlens.probes.run import ProbeOutcome

FORMAT = "cortexlens.probe/1"


def key_of(outcome: ProbeOutcome) -> str:
    return f"{HookPoint(outcome.hook, outcome.layer).name}/{outcome.pooling}"


def probe_tensors(outcomes: Sequence[ProbeOutcome]) -> dict[str, np.ndarray]:
    tensors = {}
    for outcome in outcomes:
        pipeline = outcome.final.pipeline_
        scaler, logistic = pipeline[0], pipeline[-1]
        key = key_of(outcome)
        tensors[f"{key}/coef"] = logistic.coef_
        tensors[f"{key}/intercept"] = logistic.intercept_
        tensors[f"{key}/mean"] = scaler.mean_
        tensors[f"{key}/scale"] = scaler.scale_
        tensors[f"{key}/direction"] = outcome.final.direction()
    # C order: safetensors writes the raw buffer, and scikit-learn's multinomial coef_ is Fortran-ordered.
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in tensors.items()}


def probe_config(model: str, concept: str, outcomes: Sequence[ProbeOutcome]) -> dict[str, Any]:
    classes = [str(c) for c in outcomes[0].final.classes_] if outcomes else []
    return {
        "format": FORMAT, "model": model, "concept": concept, "classes": classes,
        "probes": [{"key": key_of(o), "hook": o.hook, "layer": o.layer,
                    "hook_name": HookPoint(o.hook, o.layer).name, "pooling": o.pooling, "C": o.final.C_,
                    "accuracy": o.scores.accuracy, "d": int(o.final.pipeline_[-1].coef_.shape[1])} for o in outcomes],
    }


def encode(model: str, concept: str, outcomes: Sequence[ProbeOutcome]) -> tuple[bytes, bytes]:
    """(safetensors bytes, cfg.json bytes) of one concept's probes."""
    config = probe_config(model, concept, outcomes)
    return save(probe_tensors(outcomes), metadata={"format": FORMAT}), json.dumps(config, indent=1).encode()


def predict(tensors: dict[str, np.ndarray], key: str, classes: Sequence[str], X: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Labels and class probabilities of the probe `key` for features X [n, d] (what the pyfunc does)."""
    z = (X - tensors[f"{key}/mean"]) / tensors[f"{key}/scale"]
    logits = z @ tensors[f"{key}/coef"].T + tensors[f"{key}/intercept"]  # [n, rows]
    if logits.shape[1] == 1:  # binary: one logit for the second class
        p1 = 1 / (1 + np.exp(-logits[:, 0]))
        probs = np.stack([1 - p1, p1], axis=1)
    else:
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs = e / e.sum(axis=1, keepdims=True)
    return [classes[i] for i in probs.argmax(axis=1)], probs
