"""The toy model's architecture as a transformers LlamaConfig (see `toy.config` for the plain data)."""

from __future__ import annotations

from transformers import LlamaConfig

from cortexlens.config.schema import ToyArchitecture
from cortexlens.toy.config import toy_config_dict, toy_vocab_size

__all__ = ["toy_config", "toy_vocab_size"]


def toy_config(params: ToyArchitecture, vocab_size: int) -> LlamaConfig:
    data = toy_config_dict(params, vocab_size)
    data.pop("model_type")
    return LlamaConfig(**data)
