"""Subspace patching along one direction, a 1-D distributed alignment search, and the illusion check.

Patching along a unit direction v at one site writes only the source run's projection onto v:

    a' = a + ((a_source - a) . v) v

(denoising: a from the corrupted run, a_source from the clean one). The direction is given (a probe's,
an SAE decoder row, any file) or learnt: DAS with one dimension (Geiger et al. 2023) is v maximising
the patched logit difference on training prompts, model frozen, effect reported on held-out prompts.

The illusion check (Makelov et al. 2023, "Is This the Subspace You Are Looking For?"): v = v_row +
v_null against the weights that read the site (`readers.py`). Patching v moves the activation along
v_row by the clean-corrupted difference along v, which may come from v_null (a direction that varies
with the input but is never read) and then wake a dormant direction v_row that the corrupted and clean
runs never differ along. So each part is patched alone too; a result is flagged when its effect is at
least `min_effect` and the row-space part alone gives less than `fraction` of it: the effect then
comes mostly through the null-space part.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from cortexlens.models.hooked import HookedModel
from cortexlens.models.hooks import HookPoint
from cortexlens.models.interventions import Patch, Rows, patch_sweep, with_position_ids
from cortexlens.patching.activation import Baseline, task_metric
from cortexlens.patching.readers import reader_matrix, split
from cortexlens.patching.tasks import TaskBatch


@dataclass(frozen=True)
class Where:
    point: HookPoint
    position: int  # over real tokens (-1: last)
    head: int | None = None  # attn_z: the head whose d_head slice v lives in


@dataclass(frozen=True)
class PartEffect:
    part: str  # full | row | null
    effect: float | None  # None when the part is zero (nothing to patch)
    logit_diff: float | None


@dataclass(frozen=True)
class Check:
    parts: list[PartEffect]
    null_norm: float | None  # |v_null| of the unit direction; None when the readers are unknown
    illusion: bool | None


def width_of(model: HookedModel, where: Where) -> int:
    if where.point.hook == "attn_z" and where.head is not None:
        return model.dims.d_head
    return model.width(where.point)


def _columns(task: TaskBatch, position: int) -> torch.Tensor:
    n = task.n_tokens
    return torch.where(torch.tensor(position) >= 0, torch.tensor(position), n + position)  # [n] right padding


def _acts(model: HookedModel, inputs: dict[str, torch.Tensor], point: HookPoint) -> torch.Tensor:
    return model.run_with_cache(with_position_ids(model, inputs), [point])[point]


def projected(base: torch.Tensor, source: torch.Tensor, v: torch.Tensor, where: Where) -> torch.Tensor:
    """base with its component along v replaced by source's (every position; the patch picks one)."""
    v = v.to(base.dtype)
    if where.head is not None:
        b, s = base[:, :, where.head], source[:, :, where.head]  # [n, pos, d_head]
        out = base.clone()
        out[:, :, where.head] = b + ((s - b) @ v)[..., None] * v
        return out
    flat_b, flat_s = base.flatten(2), source.flatten(2)  # attn_z without a head: all heads flattened
    return (flat_b + ((flat_s - flat_b) @ v)[..., None] * v).reshape(base.shape)


def patch_along(model: HookedModel, task: TaskBatch, where: Where, vectors: Sequence[torch.Tensor],
                batch_size: int) -> torch.Tensor:
    """Mean LD of the denoising patch along each vector (unit or zero), [n_vectors]."""
    base_acts = _acts(model, task.corrupted, where.point)
    source_acts = _acts(model, task.clean, where.point)
    means = []
    for v in vectors:
        values = {where.point: projected(base_acts, source_acts, v.to(base_acts.device), where)}
        patches = [Patch(i, where.point, positions=where.position) for i in range(len(task))]
        # The "clean" batch of this sweep is the corrupted one: values are laid out in its columns.
        out = patch_sweep(model, task.corrupted, task.corrupted, patches, task_metric(task), batch_size,
                          clean_cache=values)
        means.append(float(out.float().mean()))
    return torch.tensor(means)


def illusion_check(model: HookedModel, task: TaskBatch, where: Where, v: torch.Tensor, base: Baseline,
                   batch_size: int, fraction: float, min_effect: float) -> Check:
    v = v.float() / v.float().norm()
    readers = reader_matrix(model, where.point, where.head)
    if readers is None:
        (full,) = patch_along(model, task, where, [v], batch_size).tolist()
        return Check([PartEffect("full", base.effect(full), full)], None, None)
    row, null = split(v, readers.to(v.device))
    unit = [v] + [p / p.norm() if p.norm() > 1e-6 else None for p in (row, null)]
    vectors = [u for u in unit if u is not None]
    lds = iter(patch_along(model, task, where, vectors, batch_size).tolist())
    parts = []
    for name, u in zip(("full", "row", "null"), unit):
        ld = next(lds) if u is not None else None
        parts.append(PartEffect(name, base.effect(ld) if ld is not None else (0.0 if name != "full" else None), ld))
    full_effect, row_effect = parts[0].effect, parts[1].effect or 0.0
    flagged = abs(full_effect) >= min_effect and abs(row_effect) < fraction * abs(full_effect)
    return Check(parts, float(null.norm()), bool(flagged))


def das_direction(model: HookedModel, task: TaskBatch, where: Where, steps: int, lr: float,
                  seed: int) -> torch.Tensor:
    """A unit vector v maximising the mean denoising LD when patching along v on `task` (model frozen).

    Starts from the mean clean-minus-corrupted difference at the site (a strong guess), then Adam on
    the logistic loss softplus(-LD)."""
    base_acts = _acts(model, task.corrupted, where.point).detach()
    source_acts = _acts(model, task.clean, where.point).detach()
    cols = _columns(task, where.position).to(base_acts.device)
    rows_index = torch.arange(len(task), device=base_acts.device)
    diff = source_acts[rows_index, cols] - base_acts[rows_index, cols]  # [n, ...]
    diff = diff[:, where.head] if where.head is not None else diff.flatten(1)
    gen = torch.Generator().manual_seed(seed)
    u = (diff.float().mean(0) + 1e-3 * torch.randn(diff.shape[1], generator=gen).to(diff.device)).clone()
    u.requires_grad_(True)
    optimizer = torch.optim.Adam([u], lr=lr)
    inputs = with_position_ids(model, task.corrupted)
    rows = Rows(rows_index, inputs)
    metric = task_metric(task)
    frozen = [p for p in model.model.parameters() if p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    try:
        with torch.inference_mode(False), torch.enable_grad():
            mask = torch.zeros(base_acts.shape[:2], dtype=torch.bool, device=base_acts.device)
            mask[rows_index, cols] = True
            mask = mask.reshape(*mask.shape, *(1,) * (base_acts.ndim - 2))
            for _ in range(steps):
                values = projected(base_acts, source_acts, u / u.norm(), where)  # [n, pos, ...], differentiable in u

                def hook(t: torch.Tensor, point: HookPoint, values: torch.Tensor = values) -> torch.Tensor:
                    return torch.where(mask.to(t.device), values.to(t.dtype), t)

                with model.hooks([(where.point, hook)]):
                    ld = metric(model.forward(inputs), rows)
                loss = torch.nn.functional.softplus(-ld.float()).mean()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
    finally:
        for p in frozen:
            p.requires_grad_(True)
    return (u / u.norm()).detach()
