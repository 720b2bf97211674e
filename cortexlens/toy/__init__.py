"""The built-in toy model: a small GPT-2 trained to do induction, saved like any Hugging Face model."""

from cortexlens.toy.evaluate import induction_accuracy
from cortexlens.toy.io import load_toy, save_toy
from cortexlens.toy.model import toy_config, toy_vocab_size
from cortexlens.toy.task import InductionBatch, induction_batch
from cortexlens.toy.tokenizer import build_toy_tokenizer
from cortexlens.toy.train import train_toy

__all__ = [
    "InductionBatch",
    "build_toy_tokenizer",
    "induction_accuracy",
    "induction_batch",
    "load_toy",
    "save_toy",
    "toy_config",
    "toy_vocab_size",
    "train_toy",
]
