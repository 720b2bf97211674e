"""The toy model's architecture as plain data: its config.json built from `train_toy` params.

Light on purpose (no torch, no transformers): `cortexlens check` learns the toy model's layers and
hooks from here before the model has been trained. `toy.model.toy_config` wraps it in a GPT2Config.
"""

from __future__ import annotations

from typing import Any

from cortexlens.config.schema import TrainToy
from cortexlens.data.corpus import corpus_vocabulary

BOS, PAD, UNK = "<|bos|>", "<|pad|>", "<|unk|>"
SPECIAL_TOKENS = (BOS, PAD, UNK)  # ids 0, 1, 2 in this order
N_SPECIAL = len(SPECIAL_TOKENS)
BOS_ID, PAD_ID, UNK_ID = range(N_SPECIAL)


def toy_vocab_size() -> int:
    """Special tokens plus the corpus words: the same ids `build_toy_tokenizer` assigns."""
    return N_SPECIAL + len(corpus_vocabulary())


def toy_config_dict(params: TrainToy, vocab_size: int | None = None) -> dict[str, Any]:
    """GPT-2 config keys, as save_pretrained writes them to config.json."""
    return {
        "model_type": "gpt2",
        "architectures": ["GPT2LMHeadModel"],
        "vocab_size": vocab_size if vocab_size is not None else toy_vocab_size(),
        "n_positions": params.n_ctx,
        "n_embd": params.d_model,
        "n_layer": params.n_layers,
        "n_head": params.n_heads,
        "n_inner": params.d_mlp,
        # No dropout: training is deterministic and the trained model behaves the same in eval mode.
        "resid_pdrop": 0.0,
        "embd_pdrop": 0.0,
        "attn_pdrop": 0.0,
        "summary_first_dropout": 0.0,
        "bos_token_id": BOS_ID,
        "eos_token_id": BOS_ID,  # the tokenizer's eos is its bos
        "pad_token_id": PAD_ID,
        "tie_word_embeddings": True,
    }
