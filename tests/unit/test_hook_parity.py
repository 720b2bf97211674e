"""Every canonical hook reads exactly what Hugging Face computes (tiny model of each family + MiniLM)."""

import pytest
import torch

from cortexlens.models.hooks import HookPoint
from cortexlens.models.loading import ResolvedSource, load_hooked_model, minilm_dir
from tests.tiny_models import FAMILIES

TEXTS = ["The cat sat on the mat.", "A much longer sentence about neurons, layers and attention heads.",
         "Short one."]
ATOL = 1e-5


def _load(directory) -> "HookedModel":  # noqa: F821
    return load_hooked_model("m", ResolvedSource("local", str(directory)), torch.device("cpu"))


def _run(model, texts=TEXTS):
    model.tokenizer.padding_side = "right"
    enc = model.tokenizer(texts, padding=True, return_tensors="pt")
    inputs = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
    points = [HookPoint(h, layer) for layer in range(model.dims.n_layers) for h in model.available_hooks()]
    cache = model.run_with_cache(inputs, points)
    with torch.no_grad():
        reference = model.model(**inputs, output_hidden_states=True)
    return inputs, cache, reference


def _assert_residual_parity(model, inputs, cache, reference):
    mask = inputs["attention_mask"].bool()  # compare real tokens only
    hidden = reference.hidden_states  # embeddings, then one per block (the last after the final norm)
    n = model.dims.n_layers
    for layer in range(n):
        torch.testing.assert_close(cache[HookPoint("resid_pre", layer)][mask], hidden[layer][mask],
                                   atol=ATOL, rtol=0)
        if layer < n - 1:
            torch.testing.assert_close(cache[HookPoint("resid_post", layer)][mask], hidden[layer + 1][mask],
                                       atol=ATOL, rtol=0)
    last = cache[HookPoint("resid_post", n - 1)]
    norm = model.final_norm()
    with torch.no_grad():
        last = norm(last) if norm is not None else last
    torch.testing.assert_close(last[mask], hidden[-1][mask], atol=ATOL, rtol=0)


def _assert_heads_sum_to_attn_out(model, cache, family):
    for layer in range(model.dims.n_layers):
        w_o, b_o = model.output_weights(layer)  # [n_heads, d_head, d_model], [d_model]
        z = cache[HookPoint("attn_z", layer)]  # [batch, pos, n_heads, d_head]
        assert z.shape[-2:] == (model.dims.n_heads, model.dims.d_head)
        per_head = torch.einsum("bphd,hdm->bphm", z, w_o)  # [batch, pos, n_heads, d_model]
        projected = per_head.sum(2) + (b_o if b_o is not None else 0)
        if family == "gemma2":  # Gemma 2 normalises the attention output before the residual add
            with torch.no_grad():
                projected = model.base.get_submodule(f"layers.{layer}.post_attention_layernorm")(projected)
        torch.testing.assert_close(projected, cache[HookPoint("attn_out", layer)], atol=ATOL, rtol=0)


def _assert_mlp_shapes(model, inputs, cache):
    batch, pos = inputs["input_ids"].shape
    for layer in range(model.dims.n_layers):
        for hook in ("mlp_pre", "mlp_post"):
            assert cache[HookPoint(hook, layer)].shape == (batch, pos, model.dims.d_mlp)


@pytest.mark.parametrize("family", FAMILIES)
def test_tiny_model_hooks_equal_hugging_face(family, tiny_model):
    model = _load(tiny_model(family))
    inputs, cache, reference = _run(model)
    _assert_residual_parity(model, inputs, cache, reference)
    _assert_heads_sum_to_attn_out(model, cache, family)
    _assert_mlp_shapes(model, inputs, cache)


def test_minilm_hooks_equal_hugging_face():
    model = load_hooked_model("minilm", ResolvedSource("builtin", str(minilm_dir()), alias="minilm"),
                              torch.device("cpu"))
    assert model.family.name == "bert" and model.dims.n_layers == 6 and model.dims.d_model == 384
    inputs, cache, reference = _run(model)
    _assert_residual_parity(model, inputs, cache, reference)
    _assert_heads_sum_to_attn_out(model, cache, "bert")
    _assert_mlp_shapes(model, inputs, cache)


@pytest.mark.parametrize("family", ["gpt2", "llama", "bert"])
def test_reading_hooks_changes_nothing_and_stopping_early_reads_the_same(family, tiny_model):
    model = _load(tiny_model(family))
    enc = model.tokenizer(TEXTS, padding=True, return_tensors="pt")
    inputs = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
    with torch.no_grad():
        plain = model.forward(inputs)[0]
    point = HookPoint("resid_post", 0)
    early = model.run_with_cache(inputs, [point], stop_early=True)[point]
    full = model.run_with_cache(inputs, [point], stop_early=False)[point]
    torch.testing.assert_close(early, full, atol=0, rtol=0)
    with model.hooks([(point, lambda t, hook: None)]), torch.no_grad():
        hooked = model.forward(inputs)[0]
    torch.testing.assert_close(hooked, plain, atol=0, rtol=0)


@pytest.mark.parametrize("family", ["gpt2", "gpt_neox", "llama", "bert"])
def test_patching_hooks_replace_activations(family, tiny_model):
    """A hook that returns a tensor replaces the activation: zeroing head 0's z changes attn_out by
    exactly head 0's contribution."""
    model = _load(tiny_model(family))
    enc = model.tokenizer(TEXTS[:1], return_tensors="pt")
    inputs = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
    z_point, out_point = HookPoint("attn_z", 1), HookPoint("attn_out", 1)
    clean = model.run_with_cache(inputs, [z_point, out_point])

    def ablate_head_0(z, hook):
        assert hook == z_point and hook.name == "blocks.1.attn.hook_z"
        z = z.clone()
        z[:, :, 0] = 0
        return z

    with model.hooks([(z_point, ablate_head_0)]):
        patched = model.run_with_cache(inputs, [out_point])[out_point]
    w_o, _ = model.output_weights(1)
    head_0 = clean[z_point][:, :, 0] @ w_o[0]  # [batch, pos, d_model]
    torch.testing.assert_close(clean[out_point] - patched, head_0, atol=ATOL, rtol=0)


def test_module_paths_reach_any_module(tiny_model):
    model = _load(tiny_model("gpt2"))
    enc = model.tokenizer(TEXTS[:1], return_tensors="pt")
    point = HookPoint("module:transformer.h.1.mlp.act", 1)
    via_module = model.run_with_cache(dict(enc), [point])[point]
    via_alias = model.run_with_cache(dict(enc), [HookPoint("mlp_post", 1)])[HookPoint("mlp_post", 1)]
    torch.testing.assert_close(via_module, via_alias, atol=0, rtol=0)
