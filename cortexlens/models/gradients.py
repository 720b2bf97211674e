"""Gradients of a scalar metric with respect to hooked activations (the input of attribution patching).

One forward pass with autograd on, the activation recorded at every point, then one
`torch.autograd.grad` call: each gradient is the total derivative of the metric through the rest of
the network, parameters' `.grad` are never touched, and frozen parameters are fine.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from cortexlens.models.hooks import HookPoint

if TYPE_CHECKING:
    from cortexlens.models.hooked import HookedModel, HookFn

# metric(model output) -> a scalar tensor, e.g. a logit difference summed over the batch.
Metric = Callable[[Any], torch.Tensor]


@dataclass
class GradientCache:
    """What `HookedModel.run_with_gradients` returns; every tensor is detached."""

    metric: torch.Tensor  # [] the metric's value on this forward pass
    activations: dict[HookPoint, torch.Tensor]  # [batch, pos, d]; attn_z [batch, pos, n_heads, d_head]
    gradients: dict[HookPoint, torch.Tensor]  # d metric / d activation, same shapes as `activations`


@contextmanager
def _autograd_on() -> Iterator[None]:
    # enable_grad overrides a caller's no_grad, but not inference_mode, which must be left explicitly.
    with torch.inference_mode(False), torch.enable_grad():
        yield


def run_with_gradients(model: HookedModel, inputs: Mapping[str, torch.Tensor], points: Sequence[HookPoint],
                       metric: Metric, fwd_hooks: Sequence[tuple[HookPoint, HookFn]] = ()) -> GradientCache:
    """Run `model` on `inputs` with autograd on; return metric(output), the activations at `points`
    and d metric / d activation at each of them.

    `fwd_hooks` (interventions) run before the recording hooks, so at a shared point the recorded
    activation, and its gradient, are those of the value the rest of the network actually receives.
    """
    points = list(dict.fromkeys(points))
    recorded: dict[HookPoint, torch.Tensor] = {}

    def record(t: torch.Tensor, hook: HookPoint) -> torch.Tensor:
        if not t.requires_grad:
            # Nothing upstream requires grad (frozen parameters): start the graph here. Still exact:
            # the detach cuts only the graph upstream of `t`, where no recorded point lies (it would
            # make `t` require grad), and every later activation computed from `t` requires grad
            # through it, so its whole path to the metric is in the graph. A later activation that
            # does not depend on `t` (a parallel branch) becomes a leaf of its own the same way.
            t = t.detach().requires_grad_(True)
        recorded[hook] = t
        # Always hand `t` back: for attn_z it is a [.., n_heads, d_head] view, and autograd.grad can
        # only reach it if the rest of the network computes from it, not from the flat original.
        return t

    with _autograd_on():
        # Tensors made under inference_mode cannot enter an autograd graph; plain copies can.
        inputs = {k: v.clone() if v.is_inference() else v for k, v in inputs.items()}
        with model.hooks([*fwd_hooks, *((p, record) for p in points)]):
            value = metric(model.forward(inputs))
        if not isinstance(value, torch.Tensor) or value.numel() != 1:
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise ValueError(f"metric must return a scalar tensor, got {shape}")
        missing = [p.name for p in points if p not in recorded]
        if missing:
            raise KeyError(f"{model.name}: hook point(s) never ran in the forward pass: {', '.join(missing)}")
        tensors = [recorded[p] for p in points]
        if value.requires_grad:
            grads = torch.autograd.grad(value.reshape(()), tensors, allow_unused=True, materialize_grads=True)
        else:  # the metric does not depend on any recorded activation
            grads = tuple(torch.zeros_like(t) for t in tensors)
    return GradientCache(
        metric=value.detach().reshape(()),
        activations={p: t.detach() for p, t in zip(points, tensors)},
        gradients={p: g.detach() for p, g in zip(points, grads)},
    )
