"""Tiny random-weight models of every supported family, saved with save_pretrained and a real tokenizer.

The tokenizer is MiniLM's WordPiece (shipped offline), so tiny models read real text; vocab_size
matches it. Weights are random: parity tests compare against Hugging Face's own outputs.
"""

from __future__ import annotations

from pathlib import Path

import torch
import transformers as T

from cortexlens.models.loading import minilm_dir

SMALL = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 3, "num_attention_heads": 4,
             "max_position_embeddings": 128}


def _configs(vocab: int) -> dict[str, T.PretrainedConfig]:
    decoder = dict(SMALL, vocab_size=vocab, bos_token_id=101, eos_token_id=102, pad_token_id=0)
    return {
        "gpt2": T.GPT2Config(n_layer=3, n_head=4, n_embd=32, n_positions=128, vocab_size=vocab,
                             bos_token_id=101, eos_token_id=102),
        "gpt_neox": T.GPTNeoXConfig(**decoder),  # Pythia: parallel attention and MLP
        "gpt_neox_sequential": T.GPTNeoXConfig(**decoder, use_parallel_residual=False),
        "llama": T.LlamaConfig(**decoder, num_key_value_heads=2),
        "qwen2": T.Qwen2Config(**decoder, num_key_value_heads=2),
        "mistral": T.MistralConfig(**decoder, num_key_value_heads=2),
        "gemma": T.GemmaConfig(**decoder, num_key_value_heads=2, head_dim=8),
        "gemma2": T.Gemma2Config(**decoder, num_key_value_heads=2, head_dim=16),
        "bert": T.BertConfig(**SMALL, vocab_size=vocab),
    }


FAMILIES = ("gpt2", "gpt_neox", "gpt_neox_sequential", "llama", "qwen2", "mistral", "gemma", "gemma2", "bert")


def save_tiny_model(family: str, directory: Path, seed: int = 0) -> Path:
    tokenizer = T.AutoTokenizer.from_pretrained(minilm_dir())
    config = _configs(len(tokenizer))[family]
    torch.manual_seed(seed)
    cls = T.BertModel if family == "bert" else T.AutoModelForCausalLM
    model = cls.from_config(config) if cls is T.AutoModelForCausalLM else cls(config)
    model.eval().save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
