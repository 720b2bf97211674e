"""The toy model's architecture as plain data: its config.json built from `train_toy` params.

Light on purpose (no torch, no transformers): `cortexlens check` learns the toy model's layers and
hooks from here before the model has been trained. `toy.model.toy_config` wraps it in a LlamaConfig.

Why this architecture (measured, README "The toy model"): a GPT-2 toy (learned absolute positions)
solves the task with heads that attend to fixed offsets, not with an induction circuit; a Llama toy
(rotary, no biases) forms the circuit but, over the corpus's 676-word vocabulary, splits the
previous-token job between two layer-0 heads by query token (each ~0.49 on average). Biases on the
query, key and value projections (Qwen2's attention) give a token-independent query and key, and a
sharp previous-token head (0.8-0.93) within ~250 steps over three seeds; a bias on the output
projection as well (Llama's `attention_bias` puts one on all four) stops the circuit forming at all.
So the toy is a Llama checkpoint with `attention_bias: true` whose output-projection biases stay zero
(frozen in training): Qwen2's attention, saved as Llama, which every tool loads (transformers maps
`qwen2` configs to a BPE tokenizer class, which cannot read this word-level tokenizer).
"""

from __future__ import annotations

from typing import Any

from cortexlens.config.schema import ToyArchitecture
from cortexlens.data.corpus import corpus_vocabulary

BOS, PAD, UNK = "<|bos|>", "<|pad|>", "<|unk|>"
SPECIAL_TOKENS = (BOS, PAD, UNK)  # ids 0, 1, 2 in this order
N_SPECIAL = len(SPECIAL_TOKENS)
BOS_ID, PAD_ID, UNK_ID = range(N_SPECIAL)


def toy_vocab_size() -> int:
    """Special tokens plus the corpus words: the same ids `build_toy_tokenizer` assigns."""
    return N_SPECIAL + len(corpus_vocabulary())


ROPE_THETA = 10000.0  # the usual base; the toy's 48 positions are far inside it


def toy_config_dict(params: ToyArchitecture, vocab_size: int | None = None) -> dict[str, Any]:
    """Llama config keys, as save_pretrained writes them (the output-projection biases are zero)."""
    return {
        "model_type": "llama",
        "architectures": ["LlamaForCausalLM"],
        "vocab_size": vocab_size if vocab_size is not None else toy_vocab_size(),
        "hidden_size": params.d_model,
        "intermediate_size": params.d_mlp,  # SwiGLU: gate and up are [d_model, d_mlp]
        "num_hidden_layers": params.n_layers,
        "num_attention_heads": params.n_heads,
        "num_key_value_heads": params.n_heads,  # no grouped-query attention: every head its own key
        "hidden_act": "silu",
        "max_position_embeddings": params.n_ctx,
        "rms_norm_eps": 1e-6,
        "rope_parameters": {"rope_theta": ROPE_THETA, "rope_type": "default"},
        "attention_bias": True,  # q, k, v (and o, kept at zero: see the module docstring)
        "mlp_bias": False,
        # No dropout: training is deterministic and the trained model behaves the same in eval mode.
        "attention_dropout": 0.0,
        "bos_token_id": BOS_ID,
        "eos_token_id": BOS_ID,  # the tokenizer's eos is its bos
        "pad_token_id": PAD_ID,
        # Untied: a separate unembedding learns the circuit faster than a tied one (measured).
        "tie_word_embeddings": False,
    }
