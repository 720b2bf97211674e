"""MLflow models-from-code: an SAE or transcoder (SAELens-format folder) that encodes activations.

MLflow copies this file into the logged model and runs it when the model is loaded, so it imports only
numpy, pandas, mlflow and safetensors. Artifact `sae`: the folder (cfg.json + sae_weights.safetensors).

    model.predict(activations)   # [n, d_in] -> DataFrame of d_sae latent columns
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from mlflow.models import set_model
from mlflow.pyfunc import PythonModel
from safetensors.numpy import load_file


class SparseEncoder(PythonModel):
    def load_context(self, context) -> None:
        root = Path(context.artifacts["sae"])
        self.cfg = json.loads((root / "cfg.json").read_text())
        self.w = load_file(str(root / "sae_weights.safetensors"))

    def predict(self, context, model_input, params=None):
        x = np.asarray(model_input.values if isinstance(model_input, pd.DataFrame) else model_input, np.float32)
        w, cfg = self.w, self.cfg
        if cfg.get("apply_b_dec_to_input", True):
            x = x - w["b_dec"]
        pre = x @ w["W_enc"] + w["b_enc"]  # [n, d_sae]
        arch = cfg["architecture"]
        if arch == "jumprelu":
            f = np.where(pre > w["threshold"], np.maximum(pre, 0), 0)
        elif arch == "topk":
            f = np.zeros_like(pre)
            idx = np.argpartition(-pre, cfg["k"] - 1, axis=1)[:, :cfg["k"]]
            np.put_along_axis(f, idx, np.maximum(np.take_along_axis(pre, idx, 1), 0), 1)
        else:
            f = np.maximum(pre, 0)
        return pd.DataFrame(f.astype(np.float32), columns=[f"f{i}" for i in range(f.shape[1])])


set_model(SparseEncoder())
