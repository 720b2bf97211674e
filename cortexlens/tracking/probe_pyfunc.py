"""MLflow models-from-code: a model's concept probes, applied to feature vectors.

MLflow copies this file into the logged model and runs it when the model is loaded, so it imports only
numpy, pandas, mlflow and safetensors: the probes load where cortexlens is not installed.
Artifact `probes`: a directory with `<concept>.safetensors` and `<concept>.json` per concept
(cortexlens.probes.weights), and `index.json` naming each concept's default probe (its best layer).

    model.predict(features, params={"concept": "sentiment"})             # the concept's best probe
    model.predict(features, params={"concept": "tense", "probe": "blocks.3.hook_resid_post/mean"})

`features` is [n, d]: pooled activations of the probe's hook point and layer (an array or a DataFrame of
d columns, or a list of vectors). Returns a DataFrame: `label` and `probability` per row.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from mlflow.models import set_model
from mlflow.pyfunc import PythonModel
from safetensors.numpy import load_file


class ConceptProbes(PythonModel):
    def load_context(self, context) -> None:
        root = Path(context.artifacts["probes"])
        self.index = json.loads((root / "index.json").read_text())
        self.root = root

    def predict(self, context, model_input, params=None):  # output schema: from the example
        params = params or {}
        concept = params.get("concept") or next(iter(self.index))
        if concept not in self.index:
            raise ValueError(f"unknown concept {concept!r} (probes: {', '.join(self.index)})")
        config = json.loads((self.root / f"{concept}.json").read_text())
        key = params.get("probe") or self.index[concept]
        tensors = load_file(str(self.root / f"{concept}.safetensors"))
        if f"{key}/coef" not in tensors:
            raise ValueError(f"concept {concept!r} has no probe {key!r} (probes: "
                             f"{', '.join(p['key'] for p in config['probes'])})")
        X = np.asarray(model_input.to_numpy() if isinstance(model_input, pd.DataFrame) else model_input,
                       dtype=np.float32)  # [n, d]
        z = (X - tensors[f"{key}/mean"]) / tensors[f"{key}/scale"]
        logits = z @ tensors[f"{key}/coef"].T + tensors[f"{key}/intercept"]  # [n, rows]
        if logits.shape[1] == 1:
            p1 = 1 / (1 + np.exp(-logits[:, 0]))
            probs = np.stack([1 - p1, p1], axis=1)
        else:
            e = np.exp(logits - logits.max(axis=1, keepdims=True))
            probs = e / e.sum(axis=1, keepdims=True)
        best = probs.argmax(axis=1)
        return pd.DataFrame({"label": [config["classes"][i] for i in best],
                             "probability": probs[np.arange(len(best)), best]})


set_model(ConceptProbes())
