"""The toy model's architecture as a transformers GPT2Config (see `toy.config` for the plain data)."""

from __future__ import annotations

from transformers import GPT2Config

from cortexlens.config.schema import TrainToy
from cortexlens.toy.config import toy_config_dict, toy_vocab_size

__all__ = ["toy_config", "toy_vocab_size"]


def toy_config(params: TrainToy, vocab_size: int) -> GPT2Config:
    data = toy_config_dict(params, vocab_size)
    data.pop("model_type")
    return GPT2Config(**data)
