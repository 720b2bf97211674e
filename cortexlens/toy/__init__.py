"""The built-in toy model: a small Llama trained to do induction, saved like any Hugging Face model.

Names are imported lazily: `cortexlens.toy.config` (the architecture as plain data) is read by
`cortexlens check`, which must not pay for torch and transformers.
"""

from typing import Any

_EXPORTS = {
    "induction_accuracy": "cortexlens.toy.evaluate", "load_toy": "cortexlens.toy.io",
    "save_toy": "cortexlens.toy.io", "toy_config": "cortexlens.toy.model",
    "toy_vocab_size": "cortexlens.toy.config", "InductionBatch": "cortexlens.toy.task",
    "induction_batch": "cortexlens.toy.task", "training_batch": "cortexlens.toy.task", "build_toy_tokenizer": "cortexlens.toy.tokenizer",
    "train_toy": "cortexlens.toy.train",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'cortexlens.toy' has no attribute {name!r}")
