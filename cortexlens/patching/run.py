"""Each method on one task, as rows of the `patching` table (the patch stage writes one unit per call)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from cortexlens.models.hooked import HookedModel
from cortexlens.models.hooks import HookPoint
from cortexlens.patching import activation as act
from cortexlens.patching.attribution import at_position, attribution, over_real_tokens
from cortexlens.patching.plugin import DirectionSpec, PatchParams
from cortexlens.patching.rows import row
from cortexlens.patching.subspace import das_direction, illusion_check
from cortexlens.patching.tasks import TaskBatch
from cortexlens.patching.tracing import KINDS, trace

Progress = Callable[[int], None] | None
HeadScores = dict[tuple[int, int], tuple[float, float]]  # (layer, head) -> (previous_token, prefix_matching)


def _common(model: HookedModel, task: TaskBatch, base: act.Baseline, **values) -> dict:
    return row(model=model.name, task=task.name, clean_logit_diff=base.clean_mean,
               corrupted_logit_diff=base.corrupted_mean, n_prompts=len(task), **values)


def _token(task: TaskBatch, pos: int | None) -> str | None:
    return task.labels[pos] if pos is not None and task.aligned and 0 <= pos < len(task.labels) else None


def activation_rows(model: HookedModel, task: TaskBatch, base: act.Baseline, section: PatchParams,
                    scores: HeadScores, progress: Progress = None) -> list[dict]:
    rows = []
    sites = act.position_sites(model, task, section.hooks)
    heads = act.head_sites(model) if section.heads else []
    for mode in section.modes:
        lds = act.sweep(model, task, [s for *_, s in sites], mode, section.batch_size, progress=progress)
        for (hook, layer, pos, _), ld in zip(sites, lds):
            mean = float(ld.mean())
            rows.append(_common(model, task, base, method="activation", mode=mode, hook=hook, layer=layer, pos=pos,
                                token=_token(task, pos), effect=base.effect(mean), logit_diff=mean))
        if heads:
            lds = act.sweep(model, task, [s for *_, s in heads], mode, section.batch_size, progress=progress)
            for (layer, head, where, _), ld in zip(heads, lds):
                rows.append(_head_row(model, task, base, scores, "activation", mode, layer, head, where, float(ld.mean())))
    if heads:
        ablated = [act.Site((HookPoint("attn_z", layer),), positions=None, heads=head)
                   for layer in range(model.dims.n_layers) for head in range(model.dims.n_heads)]
        lds = act.sweep(model, task, ablated, "mean_ablation", section.batch_size, source_cache=act.mean_z(model, task),
                        progress=progress)
        for site, ld in zip(ablated, lds):
            rows.append(_head_row(model, task, base, scores, "activation", "mean_ablation", site.points[0].layer,
                                  site.heads, "all", float(ld.mean())))
    return rows


def _head_row(model, task, base, scores: HeadScores, method: str, mode: str, layer: int, head: int, where: str,
              mean: float) -> dict:
    pos = int(task.n_tokens.min()) - 1 if where == "final" and task.aligned else (-1 if where == "final" else None)
    prev, match = scores.get((layer, head), (None, None))
    return _common(model, task, base, method=method, mode=mode, hook="attn_z", layer=layer, head=head, pos=pos,
                   token=_token(task, pos), effect=base.effect(mean), logit_diff=mean, previous_token=prev,
                   prefix_matching=match)


def attribution_rows(model: HookedModel, task: TaskBatch, base: act.Baseline, section: PatchParams,
                     scores: HeadScores) -> list[dict]:
    rows = []
    points = [HookPoint(h, layer) for h in section.hooks for layer in range(model.dims.n_layers)]
    if section.heads:
        points += [HookPoint("attn_z", layer) for layer in range(model.dims.n_layers)]
    for mode in section.modes:
        start = base.corrupted_mean if mode == "denoising" else base.clean_mean
        estimates = attribution(model, task, points, mode)
        for point, values in estimates.items():
            if point.hook == "attn_z":
                for head in range(model.dims.n_heads):
                    for where, per_prompt in (("final", at_position(values, task.n_tokens, -1)[:, head]),
                                              ("all", over_real_tokens(values, task.n_tokens)[:, head])):
                        mean = start + float(per_prompt.mean())
                        rows.append(_head_row(model, task, base, scores, "attribution", mode, point.layer, head,
                                              where, mean))
                continue
            for pos in task.positions():
                mean = start + float(at_position(values, task.n_tokens, pos).mean())
                rows.append(_common(model, task, base, method="attribution", mode=mode, hook=point.hook,
                                    layer=point.layer, pos=pos, token=_token(task, pos), effect=base.effect(mean),
                                    logit_diff=mean))
    return rows


def tracing_rows(model: HookedModel, task: TaskBatch, base: act.Baseline, section: PatchParams,
                 progress: Progress = None) -> list[dict]:
    settings = section.tracing
    result = trace(model, task, settings.kinds, settings.samples, settings.noise, settings.window, section.seed,
                   section.batch_size, progress)
    rows = []
    for t in result.traces:
        rows.append(_common(model, task, base, method="causal_tracing", mode="denoising", hook=KINDS[t.kind],
                            layer=t.layer, pos=t.pos, token=_token(task, t.pos), kind=t.kind,
                            window_layers=1 if t.kind == "resid" else settings.window, prob=t.prob,
                            clean_prob=result.clean_prob, corrupted_prob=result.noised_prob,
                            effect=t.prob - result.noised_prob))
    return rows


def subspace_rows(model: HookedModel, task: TaskBatch, spec: DirectionSpec, where, vector: torch.Tensor | None,
                  section: PatchParams) -> list[dict]:
    """Rows of each part (full, row, null); a DAS direction is learnt on the first `train_fraction` of the
    prompts and reported on both splits."""
    splits = [("all", task)]
    if vector is None:
        n_train = max(1, round(spec.train_fraction * len(task)))
        train, test = task.subset(range(n_train)), task.subset(range(n_train, len(task)))
        vector = das_direction(model, train, where, spec.das_steps, spec.das_lr, section.seed)
        splits = [("train", train), ("test", test)] if len(test) else [("train", train)]
    rows = []
    for split, part_task in splits:
        base = act.baseline(model, part_task)
        check = illusion_check(model, part_task, where, vector, base, section.batch_size, section.illusion_fraction,
                               section.min_effect)
        pos = where.position % int(part_task.n_tokens.min()) if part_task.aligned else where.position
        for part in check.parts:
            rows.append(_common(model, part_task, base, method="subspace", mode="denoising", hook=where.point.hook,
                                layer=where.point.layer, pos=pos, head=where.head, token=_token(part_task, pos),
                                direction=f"{spec.source}:{spec.name}", effect=part.effect, logit_diff=part.logit_diff,
                                part=part.part, illusion=check.illusion if part.part == "full" else None,
                                null_norm=check.null_norm, split=None if split == "all" else split))
    return rows
