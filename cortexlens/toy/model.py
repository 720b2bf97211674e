"""The toy model's architecture: a GPT-2 config built from `train_toy` params.

Pure and cheap (no weights, no tokenizer build beyond the cached word list), so the pipeline can learn
the toy model's layers and hooks before it has been trained.
"""

from __future__ import annotations

from transformers import GPT2Config

from cortexlens.config.schema import TrainToy
from cortexlens.data.corpus import corpus_vocabulary
from cortexlens.toy.tokenizer import BOS_ID, N_SPECIAL, PAD_ID


def toy_vocab_size() -> int:
    """Special tokens plus the corpus words: the same ids `build_toy_tokenizer` assigns."""
    return N_SPECIAL + len(corpus_vocabulary())


def toy_config(params: TrainToy, vocab_size: int) -> GPT2Config:
    return GPT2Config(
        vocab_size=vocab_size,
        n_positions=params.n_ctx,
        n_embd=params.d_model,
        n_layer=params.n_layers,
        n_head=params.n_heads,
        n_inner=params.d_mlp,
        # No dropout: training is deterministic and the trained model behaves the same in eval mode.
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        summary_first_dropout=0.0,
        bos_token_id=BOS_ID,
        eos_token_id=BOS_ID,  # the tokenizer's eos is its bos
        pad_token_id=PAD_ID,
        tie_word_embeddings=True,
    )
