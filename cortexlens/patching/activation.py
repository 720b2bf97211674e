"""Activation patching as batched sweeps: denoising, noising and mean ablation, per position and per head.

Denoising runs the corrupted prompt with clean activations written in at one site; noising runs the
clean prompt with corrupted activations written in. The metric is the logit difference LD =
logit(answer) - logit(distractor) at the last token, and the effect of a site is normalised,

    effect = (mean LD_patched - mean LD_corrupted) / (mean LD_clean - mean LD_corrupted),

means over the task's prompts: 1 when a denoising patch restores the clean behaviour, 0 when it does
nothing; in noising, a site that matters pulls the effect from 1 toward 0. Mean ablation runs the clean
prompt with one head's output replaced by its mean over the task's prompts and positions.
Every patched run is one row of `cortexlens.models.interventions.patch_sweep`, so a full sweep is
n_sites x n_prompts / batch_size forward passes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from cortexlens.models.hooked import HookedModel
from cortexlens.models.hooks import HookPoint
from cortexlens.models.interventions import Patch, Rows, logit_diff, patch_sweep, with_position_ids
from cortexlens.patching.tasks import TaskBatch

MODES = ("denoising", "noising")


@dataclass(frozen=True)
class Site:
    """Where one patch writes: points (several for a window), positions (None: all), heads (attn_z)."""

    points: tuple[HookPoint, ...]
    positions: int | tuple[int, ...] | None = None
    heads: int | tuple[int, ...] | None = None


@dataclass(frozen=True)
class Baseline:
    clean: torch.Tensor  # [n] logit differences of the clean prompts
    corrupted: torch.Tensor  # [n]

    @property
    def clean_mean(self) -> float:
        return float(self.clean.mean())

    @property
    def corrupted_mean(self) -> float:
        return float(self.corrupted.mean())

    def effect(self, patched_mean: float) -> float:
        return (patched_mean - self.corrupted_mean) / (self.clean_mean - self.corrupted_mean)


def task_metric(task: TaskBatch):
    return logit_diff(task.answer, task.distractor)


@torch.no_grad()
def logit_diffs(model: HookedModel, inputs: dict[str, torch.Tensor], task: TaskBatch) -> torch.Tensor:
    """[n] LD of each prompt, unpatched."""
    inputs = with_position_ids(model, inputs)
    rows = Rows(torch.arange(len(task), device=model.device), inputs)
    return task_metric(task)(model.forward(inputs), rows).double().cpu()


def baseline(model: HookedModel, task: TaskBatch) -> Baseline:
    return Baseline(logit_diffs(model, task.clean, task), logit_diffs(model, task.corrupted, task))


def sweep(model: HookedModel, task: TaskBatch, sites: Sequence[Site], mode: str, batch_size: int,
          source_cache: dict[HookPoint, torch.Tensor] | None = None,
          progress: Callable[[int], None] | None = None) -> torch.Tensor:
    """LD of every (site, prompt) patched run, [n_sites, n_prompts].

    mode: denoising (corrupted run, clean values), noising (clean run, corrupted values), or
    mean_ablation (clean run, `source_cache` values)."""
    base, source = {"denoising": (task.corrupted, task.clean), "noising": (task.clean, task.corrupted),
                    "mean_ablation": (task.clean, task.clean)}[mode]
    n = len(task)
    patches = [Patch(i, site.points, positions=site.positions, heads=site.heads) for site in sites for i in range(n)]
    out = patch_sweep(model, base, source, patches, task_metric(task), batch_size, clean_cache=source_cache,
                      progress=progress)
    return out.double().cpu().reshape(len(sites), n)


def position_sites(model: HookedModel, task: TaskBatch, hooks: Sequence[str]) -> list[tuple[str, int, int, Site]]:
    """(hook, layer, pos, site) for every layer x position of each hook."""
    return [(hook, layer, pos, Site((HookPoint(hook, layer),), positions=pos))
            for hook in hooks for layer in range(model.dims.n_layers) for pos in task.positions()]


def head_sites(model: HookedModel) -> list[tuple[int, int, str, Site]]:
    """(layer, head, where, site): every head at the final position and at every position."""
    out = []
    for layer in range(model.dims.n_layers):
        for head in range(model.dims.n_heads):
            point = (HookPoint("attn_z", layer),)
            out.append((layer, head, "final", Site(point, positions=-1, heads=head)))
            out.append((layer, head, "all", Site(point, positions=None, heads=head)))
    return out


@torch.no_grad()
def mean_z(model: HookedModel, task: TaskBatch) -> dict[HookPoint, torch.Tensor]:
    """Per layer, every head's mean attn_z over the task's clean prompts and real positions, laid out
    like the clean batch ([n, pos, n_heads, d_head]): the values mean ablation writes in."""
    points = [HookPoint("attn_z", layer) for layer in range(model.dims.n_layers)]
    inputs = with_position_ids(model, task.clean)
    cache = model.run_with_cache(inputs, points)
    mask = inputs["attention_mask"].bool()  # [n, pos]
    return {p: cache[p][mask].mean(0).expand_as(cache[p]).contiguous() for p in points}
