"""Attention patterns are the model's own: pattern @ V equals the attn_z hook (tiny Llama with grouped
keys and GPT-2), rows sum to one over what a query may see, and the attention implementation is restored."""

import pytest
import torch

from cortexlens.models.attention import attention_patterns
from cortexlens.models.hooks import HookPoint
from cortexlens.models.interventions import encode_prompts, with_position_ids
from tests.helpers import load_local

TEXTS = ["the cat sat on the mat", "paris is the capital of"]  # different lengths: right padding


def _values(model, layer: int, inputs) -> torch.Tensor:
    """[batch, n_heads, pos, d_head] value vectors of every query head (grouped keys repeated)."""
    dims, block = model.dims, model.base.get_submodule(model.family.block_path(layer))
    store = {}
    if model.family.name == "gpt2":
        module = block.attn.c_attn
        take = lambda out: out[..., 2 * dims.d_model:]
    else:
        module = block.self_attn.v_proj
        take = lambda out: out
    def save(module, args, out) -> None:  # returns nothing: the output is left alone
        store["v"] = take(out)

    handle = module.register_forward_hook(save)
    try:
        with torch.no_grad():
            model.forward(inputs)
    finally:
        handle.remove()
    v = store["v"].unflatten(-1, (-1, dims.d_head)).transpose(1, 2)  # [batch, kv_heads, pos, d_head]
    return v.repeat_interleave(dims.n_heads // v.shape[1], dim=1)


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_pattern_times_values_is_hook_z(family, tiny_model):
    model = load_local(tiny_model(family))
    before = model.model.config._attn_implementation
    inputs = with_position_ids(model, encode_prompts(model, TEXTS))
    patterns = attention_patterns(model.model, inputs)
    assert model.model.config._attn_implementation == before  # switched back
    assert len(patterns) == model.dims.n_layers
    mask = inputs["attention_mask"].bool()  # [batch, pos]
    for layer, pattern in enumerate(patterns):
        assert pattern.shape == (2, model.dims.n_heads, mask.shape[1], mask.shape[1])
        real = pattern[mask[:, None, :, None].expand_as(pattern)[..., 0]]  # rows of real queries
        torch.testing.assert_close(real.sum(-1), torch.ones_like(real.sum(-1)), atol=1e-5, rtol=0)
        assert torch.all(pattern.triu(1) == 0)  # causal: no query sees a later key
        z = model.run_with_cache(inputs, [HookPoint("attn_z", layer)])[HookPoint("attn_z", layer)]
        ours = (pattern @ _values(model, layer, inputs)).transpose(1, 2)  # [batch, pos, n_heads, d_head]
        torch.testing.assert_close(ours[mask], z[mask], atol=1e-5, rtol=1e-5)
