"""d metric / d activation equals a central finite difference (float64, tiny GPT-2 and Llama)."""

import types

import pytest
import torch

from cortexlens.models.hooks import HookPoint
from cortexlens.models.interventions import Rows, encode_prompts, logit_diff
from tests.helpers import load_local

TEXTS = ["the cat sat on the mat", "paris is the capital of"]  # different lengths: right padding
POINTS = [HookPoint("resid_pre", 0), HookPoint("attn_z", 1), HookPoint("mlp_post", 1), HookPoint("resid_post", 2)]
EPS = 1e-5
RTOL = 1e-4
worst: dict[str, float] = {}  # largest relative error per family, printed with -s


def _rms_norm_in_input_dtype(self, x: torch.Tensor) -> torch.Tensor:
    variance = x.pow(2).mean(-1, keepdim=True)
    return self.weight * (x * torch.rsqrt(variance + self.variance_epsilon))


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def setup(request, tiny_model):
    model = load_local(tiny_model(request.param))
    model.model.double()  # float64: the central difference is then good to ~1e-10
    for module in model.model.modules():
        # Llama's RMSNorm rounds through float32 whatever the input dtype; that rounding (~6e-8)
        # would swamp a float64 central difference (error ~ 6e-8 / EPS). Same formula, in float64.
        if type(module).__name__ == "LlamaRMSNorm":
            module.forward = types.MethodType(_rms_norm_in_input_dtype, module)
    inputs = encode_prompts(model, TEXTS)
    gen = torch.Generator().manual_seed(0)
    correct, wrong = torch.randint(0, model.dims.vocab_size, (2, len(TEXTS)), generator=gen)
    per_row = logit_diff(correct, wrong)
    rows = Rows(torch.arange(len(TEXTS)), inputs)

    def metric(output):  # the logit difference at each prompt's last real token, summed
        return per_row(output, rows).sum()

    yield request.param, model, inputs, metric
    print(f"\n{request.param}: largest relative error <grad, v> vs central difference: {worst[request.param]:.2e}")


def _f(model, inputs, metric, shifts: dict[HookPoint, torch.Tensor], fwd_hooks=()) -> float:
    """metric with `shifts` added to the activations (by hooks, after any intervention hooks)."""
    def add(t, hook):
        return t + shifts[hook]
    with torch.no_grad(), model.hooks([*fwd_hooks, *((p, add) for p in shifts)]):
        return metric(model.forward(inputs)).item()


def _directions(act: torch.Tensor, point: HookPoint, gen: torch.Generator) -> list[torch.Tensor]:
    """Random directions at the activation's scale; one per head for attn_z (the gradient is per head)."""
    v = torch.randn(act.shape, generator=gen, dtype=act.dtype) * act.std()
    if point.hook != "attn_z":
        return [v]
    heads = []
    for h in range(act.shape[2]):
        only = torch.zeros_like(v)
        only[:, :, h] = v[:, :, h]
        heads.append(only)
    return heads


def _check(family, model, inputs, metric, grads: dict, vs: dict[HookPoint, torch.Tensor], fwd_hooks=()) -> None:
    """<grad, v> summed over points == (f(a + eps v) - f(a - eps v)) / 2 eps, within RTOL."""
    predicted = sum((grads[p] * v).sum().item() for p, v in vs.items())
    plus = _f(model, inputs, metric, {p: EPS * v for p, v in vs.items()}, fwd_hooks)
    minus = _f(model, inputs, metric, {p: -EPS * v for p, v in vs.items()}, fwd_hooks)
    estimate = (plus - minus) / (2 * EPS)
    rel = abs(predicted - estimate) / abs(estimate)
    worst[family] = max(worst.get(family, 0.0), rel)
    assert rel <= RTOL, (list(vs), predicted, estimate)


def test_gradients_equal_finite_differences(setup):
    family, model, inputs, metric = setup
    with torch.no_grad():  # a caller's no_grad must not matter
        run = model.run_with_gradients(inputs, POINTS, metric)
    assert all(p.grad is None for p in model.model.parameters())  # autograd.grad accumulates nothing
    cache = model.run_with_cache(inputs, POINTS)
    gen = torch.Generator().manual_seed(1)
    for point in POINTS:
        assert run.gradients[point].shape == run.activations[point].shape == cache[point].shape
        torch.testing.assert_close(run.activations[point], cache[point], atol=1e-12, rtol=0)
        for v in _directions(cache[point], point, gen):
            _check(family, model, inputs, metric, run.gradients, {point: v})
    assert run.metric.item() == pytest.approx(_f(model, inputs, metric, {}), abs=1e-12)


def test_two_points_at_once_are_total_derivatives(setup):
    family, model, inputs, metric = setup
    early, late = HookPoint("resid_pre", 1), HookPoint("attn_z", 2)
    both = model.run_with_gradients(inputs, [early, late], metric)
    for point in (early, late):  # the same as asking for each alone
        alone = model.run_with_gradients(inputs, [point], metric)
        torch.testing.assert_close(both.gradients[point], alone.gradients[point], atol=1e-12, rtol=0)
    # Shifting both: the late point's shift lands on top of what the early shift changed there.
    gen = torch.Generator().manual_seed(2)
    vs = {p: torch.randn(both.activations[p].shape, generator=gen, dtype=torch.float64)
          * both.activations[p].std() for p in (early, late)}
    _check(family, model, inputs, metric, both.gradients, vs)


def test_frozen_parameters_give_the_same_gradients(setup):
    family, model, inputs, metric = setup
    reference = model.run_with_gradients(inputs, POINTS, metric)
    params = list(model.model.parameters())
    try:
        for p in params:
            p.requires_grad_(False)
        frozen = model.run_with_gradients(inputs, POINTS, metric)  # resid_pre 0 becomes the leaf
        with torch.inference_mode():  # even in inference mode, with inputs made inside it
            from_z = model.run_with_gradients({k: v.clone() for k, v in inputs.items()}, POINTS[1:], metric)
    finally:
        for p in params:
            p.requires_grad_(True)
    for point in POINTS:
        torch.testing.assert_close(frozen.gradients[point], reference.gradients[point], atol=1e-12, rtol=0)
    for point in POINTS[1:]:  # attn_z 1 (a per-head view) is the leaf here; later points flow from it
        torch.testing.assert_close(from_z.gradients[point], reference.gradients[point], atol=1e-12, rtol=0)
    gen = torch.Generator().manual_seed(3)
    point = HookPoint("mlp_post", 1)
    _check(family, model, inputs, metric, frozen.gradients,
           {point: _directions(frozen.activations[point], point, gen)[0]})


def test_intervention_hooks_apply_during_the_gradient_run(setup):
    family, model, inputs, metric = setup

    def ablate_head_0(z, hook):
        z = z.clone()
        z[:, :, 0] = 0
        return z

    hooks = [(HookPoint("attn_z", 0), ablate_head_0)]
    point = HookPoint("resid_post", 1)
    run = model.run_with_gradients(inputs, [point], metric, fwd_hooks=hooks)
    plain = model.run_with_gradients(inputs, [point], metric)
    assert run.metric.item() == pytest.approx(_f(model, inputs, metric, {}, hooks), abs=1e-12)
    assert (run.metric - plain.metric).abs() > 1e-6  # the ablation changed the run
    gen = torch.Generator().manual_seed(4)
    _check(family, model, inputs, metric, run.gradients,
           {point: _directions(run.activations[point], point, gen)[0]}, hooks)


def test_metric_must_be_a_scalar(setup):
    _, model, inputs, _ = setup
    with pytest.raises(ValueError, match="metric must return a scalar tensor"):
        model.run_with_gradients(inputs, POINTS[:1], lambda output: output.logits[:, -1, :2].sum(0))
