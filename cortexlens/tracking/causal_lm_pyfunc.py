"""MLflow models-from-code: a causal LM directory as a pyfunc that predicts the next token of each text.

MLflow copies this file into the logged model and runs it when the model is loaded, so it imports only
mlflow, pandas, torch, transformers and safetensors: the model loads where cortexlens is not installed.
Artifacts: `weights` (model.safetensors), `cfg` (the Hugging Face config.json, any causal-LM
architecture transformers knows: the toy models are Llama checkpoints), `tokenizer` (a directory).
"""

from __future__ import annotations

import json

import pandas as pd
import torch
from mlflow.models import set_model
from mlflow.pyfunc import PythonModel
from safetensors.torch import load_file
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer


class NextToken(PythonModel):
    def load_context(self, context) -> None:
        with open(context.artifacts["cfg"], encoding="utf-8") as fh:
            data = json.load(fh)
        config = AutoConfig.for_model(data.pop("model_type"), **data)
        model = AutoModelForCausalLM.from_config(config)
        missing, unexpected = model.load_state_dict(load_file(context.artifacts["weights"]), strict=False)
        # save_pretrained leaves out the output embedding when it is tied to the input one.
        tied = {"lm_head.weight"} if config.tie_word_embeddings else set()
        if unexpected or set(missing) - tied:
            raise ValueError(f"weights do not match cfg.json: missing {missing}, unexpected {unexpected}")
        if tied:
            model.tie_weights()
        self.model = model.eval()
        self.tokenizer = AutoTokenizer.from_pretrained(context.artifacts["tokenizer"], local_files_only=True)
        # Keep the end of a text longer than the context: the prediction is made at its last token.
        self.tokenizer.truncation_side = "left"
        self.n_ctx = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)

    def predict(self, context, model_input: list[str], params=None):  # output schema: from the example
        """One row per text: the most likely next token, its id and its probability."""
        rows = []
        with torch.inference_mode():
            for text in model_input:  # one at a time: no padding, so no attention-mask subtleties
                ids = self.tokenizer(text, return_tensors="pt", truncation=self.n_ctx is not None,
                                     max_length=self.n_ctx)["input_ids"]  # [1, pos]
                probs = self.model(input_ids=ids).logits[0, -1].float().softmax(-1)  # [vocab]
                probability, token_id = probs.max(-1)
                rows.append({"next_token": self.tokenizer.decode([int(token_id)]),
                             "token_id": int(token_id), "probability": float(probability)})
        return pd.DataFrame(rows, columns=["next_token", "token_id", "probability"])


set_model(NextToken())
