"""Attention patterns: each head's softmax over keys, as the unmodified model computes it.

Fused attention kernels (sdpa, flash) never materialise the pattern, so the model is switched to the
eager implementation for the one forward pass that returns it, and switched back afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import torch
from transformers import PreTrainedModel

EAGER = "eager"


@contextmanager
def eager_attention(model: PreTrainedModel) -> Iterator[None]:
    """Run `model` with eager attention inside the block (it returns its patterns), then restore."""
    before = getattr(model.config, "_attn_implementation", None)
    if before == EAGER:
        yield
        return
    model.set_attn_implementation(EAGER)
    try:
        yield
    finally:
        model.set_attn_implementation(before)


@torch.no_grad()
def attention_patterns(model: PreTrainedModel, inputs: Mapping[str, torch.Tensor]) -> list[torch.Tensor]:
    """One forward pass; per layer, the attention probabilities [batch, n_heads, query, key] (float32).

    Rows sum to 1 over the keys a query may see (causal and padding masks applied by the model).
    """
    with eager_attention(model):
        output = model(**inputs, output_attentions=True)
    patterns = getattr(output, "attentions", None)
    if not patterns:
        raise ValueError(f"{type(model).__name__} returned no attention patterns (output_attentions)")
    return [p.float() for p in patterns]
