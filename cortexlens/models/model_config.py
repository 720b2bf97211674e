"""A model's config.json read as plain JSON: the sizes and flags hook resolution needs, no transformers.

`cortexlens check` validates hooks and layers for every model of a study; importing transformers (and
torch under it) for that would cost seconds of start-up. `ModelConfig` answers the same attribute
reads as a `transformers.PretrainedConfig` for the keys `families.dims_of` and `Family.hooks_for`
use, including transformers' aliases (GPT-2's `n_embd` read as `hidden_size`) and the class defaults
of keys a config.json may omit. A test compares it with `AutoConfig` for every supported family.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# transformers' `attribute_map`s: the canonical name -> the key some families write instead.
ALIASES: dict[str, tuple[str, ...]] = {
    "hidden_size": ("n_embd", "d_model"),
    "num_attention_heads": ("n_head",),
    "num_hidden_layers": ("n_layer",),
    "max_position_embeddings": ("n_positions",),
}
# Class defaults (transformers 5) of keys that change hook widths or hook sets when omitted.
DEFAULTS: dict[str, dict[str, Any]] = {
    "gpt2": {"activation_function": "gelu_new"},
    "gpt_neox": {"use_parallel_residual": True, "hidden_act": "gelu"},
    "llama": {"hidden_act": "silu"},
    "qwen2": {"hidden_act": "silu"},
    "qwen3": {"head_dim": 128, "hidden_act": "silu"},
    "mistral": {"hidden_act": "silu"},
    "gemma": {"head_dim": 256, "hidden_act": "gelu_pytorch_tanh"},
    "gemma2": {"head_dim": 256, "hidden_activation": "gelu_pytorch_tanh"},
    "gemma3_text": {"head_dim": 256, "hidden_activation": "gelu_pytorch_tanh"},
    "bert": {"hidden_act": "gelu"},
    "roberta": {"hidden_act": "gelu"},
    "xlm-roberta": {"hidden_act": "gelu"},
}
# Read by dims_of / hooks_for with a fallback: absent means None, as on a PretrainedConfig without them.
OPTIONAL = ("head_dim", "intermediate_size", "n_inner", "use_parallel_residual", "parallel_attn",
            "max_position_embeddings", "architectures", "_commit_hash", "hidden_act", "hidden_activation",
            "activation_function")


class ModelConfig:
    """Attribute access over a config.json mapping (`config.hidden_size`, `config.model_type`)."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        self._data = dict(data)

    @classmethod
    def from_file(cls, path: Path) -> ModelConfig:
        return cls(json.loads(Path(path).read_text(encoding="utf-8")))

    @property
    def data(self) -> dict[str, Any]:
        return dict(self._data)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        data = self.__dict__.get("_data", {})
        for key in (name, *ALIASES.get(name, ())):
            if key in data:
                return data[key]
        defaults = DEFAULTS.get(data.get("model_type", ""), {})
        if name in defaults:
            return defaults[name]
        if name in OPTIONAL:
            return None
        raise AttributeError(f"config.json of model type {data.get('model_type')!r} has no {name!r}")

    def to_transformers(self):
        """The equivalent `PretrainedConfig` (imports transformers; only for module-path checks)."""
        from transformers import AutoConfig

        data = {k: v for k, v in self._data.items() if k != "model_type"}
        return AutoConfig.for_model(self._data["model_type"], **data)
