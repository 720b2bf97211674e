"""Per-row batched patching equals one forward pass per patch (tiny GPT-2 and Llama, padded prompts)."""

import pytest
import torch

from cortexlens.models.hooks import HookPoint
from cortexlens.models.interventions import (
    Patch,
    Rows,
    encode_prompts,
    logit_diff,
    patch_rows,
    patch_sweep,
    real_columns,
)
from tests.helpers import load_local

# (clean, corrupted) pairs: the same number of tokens within a pair (8, 16 and 7 with [CLS]/[SEP]).
PAIRS = [("the cat sat on the mat", "the dog sat on the mat"),
         ("when mary and john went to the store , john gave a drink to",
          "when mary and john went to the store , mary gave a drink to"),
         ("paris is the capital of", "rome is the capital of")]
ATOL = 1e-5
FLIP = {"right": "left", "left": "right"}


def _last_logits(output, rows: Rows) -> torch.Tensor:
    return output.logits[torch.arange(len(rows.prompts)), rows.last_positions]  # [rows, vocab]


def _one_pass(model, corrupted, clean, clean_cache, patch: Patch, metric):
    """The reference: prompt `patch.prompt` alone (no padding), one forward pass, patched by plain indexing."""
    i = patch.prompt
    cols, clean_cols = real_columns(corrupted["attention_mask"])[i], real_columns(clean["attention_mask"])[i]
    n = len(cols)
    # The prompt's real tokens only, default position ids (and segment ids only if the batch has them).
    inputs = {k: corrupted[k][i, cols][None] for k in ("input_ids", "token_type_ids") if k in corrupted}
    inputs["attention_mask"] = torch.ones_like(inputs["input_ids"])  # [1, n]
    pos = list(range(n)) if patch.positions is None else [p % n for p in patch.positions]

    def patch_in(t, hook):
        t = t.clone()
        source = clean_cache[hook][i, clean_cols]  # [n, ...] the clean prompt's real tokens
        for p in pos:
            if hook.hook == "attn_z" and patch.heads is not None:
                for h in patch.heads:
                    t[0, p, h] = source[p, h]
            else:
                t[0, p] = source[p]
        return t

    with torch.no_grad(), model.hooks([(point, patch_in) for point in patch.points]):
        output = model.forward(inputs)
    rows = Rows(torch.tensor([i]), inputs)
    return metric(output, rows)[0], _last_logits(output, rows)[0]


def _patches(model, corrupted) -> list[Patch]:
    n_layers, n_heads = model.dims.n_layers, model.dims.n_heads
    lengths = corrupted["attention_mask"].sum(-1).tolist()
    resid = [Patch(i, HookPoint("resid_pre", layer), positions=p)
             for layer in range(n_layers) for i, n in enumerate(lengths) for p in range(n)]
    heads = [Patch(i, HookPoint("attn_z", layer), heads=h)
             for layer in range(n_layers) for h in range(n_heads) for i in range(len(lengths))]
    several = [Patch(1, (HookPoint("resid_pre", 1), HookPoint("attn_z", 2)), positions=(0, -1), heads=(1, 3)),
               Patch(0, (HookPoint("mlp_post", 0), HookPoint("resid_post", 2)), positions=-1),
               Patch(2, (HookPoint("attn_z", 0), HookPoint("attn_z", 1)), heads=0)]
    return resid + heads + several


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_batched_patching_equals_one_pass_per_patch(family, side, tiny_model):
    model = load_local(tiny_model(family))
    # Clean padded on the other side: positions must map through each batch's own mask.
    clean = encode_prompts(model, [c for c, _ in PAIRS], FLIP[side])
    corrupted = encode_prompts(model, [c for _, c in PAIRS], side)
    patches = _patches(model, corrupted)
    points = list(dict.fromkeys(p for patch in patches for p in patch.points))
    clean_cache = model.run_with_cache(clean, points)
    gen = torch.Generator().manual_seed(0)
    correct, wrong = torch.randint(0, model.dims.vocab_size, (2, len(PAIRS)), generator=gen)
    metric = logit_diff(correct, wrong)

    batch_size = 7  # smaller than the sweep, and not a divisor: batches mix layers, hooks and prompts
    batched = patch_sweep(model, corrupted, clean, patches, metric, batch_size, clean_cache)
    batched_logits = patch_sweep(model, corrupted, clean, patches, _last_logits, batch_size, clean_cache)
    assert batched.shape == (len(patches),) and batched_logits.shape == (len(patches), model.dims.vocab_size)
    reference = [_one_pass(model, corrupted, clean, clean_cache, patch, metric) for patch in patches]
    ref_metric = torch.stack([m for m, _ in reference])
    ref_logits = torch.stack([lg for _, lg in reference])
    metric_diff = (batched - ref_metric).abs().max().item()
    logits_diff = (batched_logits - ref_logits).abs().max().item()
    print(f"\n{family}/{side}: {len(patches)} patches, batch {batch_size}: max |metric diff| {metric_diff:.2e}, "
          f"max |final logits diff| {logits_diff:.2e} (metric range {ref_metric.abs().max():.2f})")
    assert metric_diff <= ATOL and logits_diff <= ATOL
    # The patches did something: the metric varies across patches.
    assert ref_metric.std() > 100 * ATOL

    # Known answer: patching every position of resid_pre 0 turns the corrupted run into the clean one.
    everything = [Patch(i, HookPoint("resid_pre", 0)) for i in range(len(PAIRS))]
    restored = patch_sweep(model, corrupted, clean, everything, _last_logits, 2)
    with torch.no_grad():
        clean_logits = _last_logits(model.forward(clean), Rows(torch.arange(len(PAIRS)), clean))
    torch.testing.assert_close(restored, clean_logits, atol=ATOL, rtol=0)


def test_clean_cache_is_computed_when_not_given(tiny_model):
    model = load_local(tiny_model("gpt2"))
    clean = encode_prompts(model, [c for c, _ in PAIRS])
    corrupted = encode_prompts(model, [c for _, c in PAIRS])
    patches = [Patch(i, HookPoint("resid_post", 1), positions=2) for i in range(len(PAIRS))]
    given = patch_sweep(model, corrupted, clean, patches, _last_logits, 2,
                        model.run_with_cache(clean, [HookPoint("resid_post", 1)]))
    computed = patch_sweep(model, corrupted, clean, patches, _last_logits, 2)
    torch.testing.assert_close(given, computed, atol=0, rtol=0)


def test_patch_rows_checks_shapes():
    point = HookPoint("attn_z", 0)
    t = torch.zeros(2, 5, 4, 8)  # [batch, pos, n_heads, d_head]
    assert patch_rows(torch.ones_like(t), torch.ones(2, 5, 4, dtype=torch.bool))(t, point).eq(1).all()
    with pytest.raises(ValueError, match=r"patch_rows at blocks.0.attn.hook_z: values \(2, 5, 32\)"):
        patch_rows(torch.ones(2, 5, 32), torch.ones(2, 5, dtype=torch.bool))(t, point)
    with pytest.raises(ValueError, match=r"mask \(2, 4\) must be \(2, 5\) \[batch, pos\] or \(2, 5, 4\) per head"):
        patch_rows(torch.ones_like(t), torch.ones(2, 4, dtype=torch.bool))(t, point)
    with pytest.raises(ValueError, match=r"mask \(2, 5, 4\) must be \(2, 5\) \[batch, pos\]$"):
        patch_rows(torch.ones(2, 5, 32), torch.ones(2, 5, 4, dtype=torch.bool))(torch.zeros(2, 5, 32), point)
    with pytest.raises(TypeError, match="mask must be bool"):
        patch_rows(torch.ones_like(t), torch.ones(2, 5))


def test_bad_patches_fail_before_any_forward_pass(tiny_model):
    model = load_local(tiny_model("gpt2"))
    clean = encode_prompts(model, [c for c, _ in PAIRS])
    corrupted = encode_prompts(model, [c for _, c in PAIRS])
    with pytest.raises(ValueError, match="heads are given but no point is attn_z"):
        Patch(0, HookPoint("resid_pre", 0), heads=1)
    cache = model.run_with_cache(clean, [HookPoint("resid_pre", 0)])
    bad = {"positions .8,. outside prompt 0's 8 tokens": Patch(0, HookPoint("resid_pre", 0), positions=8),
           "prompt 3 outside the 3 prompts": Patch(3, HookPoint("resid_pre", 0)),
           "no clean activations for blocks.1.hook_resid_pre": Patch(0, HookPoint("resid_pre", 1))}
    for message, patch in bad.items():
        with pytest.raises((ValueError, KeyError), match=message):
            patch_sweep(model, corrupted, clean, [patch], _last_logits, clean_cache=cache)
    other = encode_prompts(model, ["the cat sat on the mat today"] + [c for c, _ in PAIRS[1:]])
    with pytest.raises(ValueError, match="prompt 0 has 8 corrupted tokens but 9 clean ones"):
        patch_sweep(model, corrupted, other, [Patch(0, HookPoint("resid_pre", 0))], _last_logits)
