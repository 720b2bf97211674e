"""Attribution patching (Nanda 2023; Syed et al. 2023): the first-order estimate of every patch at once.

For a site with activation a in the run being patched and a' in the source run, patching changes the
metric by about (a' - a) . dLD/da, the gradient taken in the unpatched run. One forward and one
backward pass give it for every layer, position and head:

    denoising:  LD_patched ~ LD_corrupted + (a_clean - a_corrupted) . grad_corrupted
    noising:    LD_patched ~ LD_clean + (a_corrupted - a_clean) . grad_clean

normalised like exact patching. It is exact for a site the metric depends on linearly and drifts
where attention patterns or nonlinearities move; the stage stores it beside exact patching.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from cortexlens.models.hooked import HookedModel
from cortexlens.models.hooks import HookPoint
from cortexlens.models.interventions import Rows, with_position_ids
from cortexlens.patching.activation import task_metric
from cortexlens.patching.tasks import TaskBatch


def attribution(model: HookedModel, task: TaskBatch, points: Sequence[HookPoint],
                mode: str) -> dict[HookPoint, torch.Tensor]:
    """Per point, the estimated LD change of patching each prompt's site: [n, pos] (attn_z:
    [n, pos, n_heads]), over the padded columns of the (right-padded, aligned) batch."""
    base, source = (task.corrupted, task.clean) if mode == "denoising" else (task.clean, task.corrupted)
    base, source = with_position_ids(model, base), with_position_ids(model, source)
    source_acts = model.run_with_cache(source, list(points), stop_early=False)
    rows = Rows(torch.arange(len(task), device=model.device), base)
    metric = task_metric(task)
    grads = model.run_with_gradients(base, list(points), metric=lambda out: metric(out, rows).sum())
    out = {}
    for point in points:
        delta = source_acts[point] - grads.activations[point]  # [n, pos, d] or [n, pos, n_heads, d_head]
        out[point] = (delta * grads.gradients[point]).sum(-1).double().cpu()
    return out


def at_position(values: torch.Tensor, n_tokens: torch.Tensor, pos: int) -> torch.Tensor:
    """[n, ...] the values at real-token position `pos` (negative: from each prompt's end) of a
    right-padded batch."""
    cols = torch.where(torch.tensor(pos) >= 0, torch.tensor(pos), n_tokens + pos)  # [n]
    return values[torch.arange(len(n_tokens)), cols]


def over_real_tokens(values: torch.Tensor, n_tokens: torch.Tensor) -> torch.Tensor:
    """[n, ...] the sum over each prompt's real tokens (patching a site at every position)."""
    mask = torch.arange(values.shape[1])[None, :] < n_tokens[:, None]  # [n, pos]
    mask = mask.reshape(*mask.shape, *(1,) * (values.ndim - 2))
    return (values * mask).sum(1)
