"""The naive reference: one forward pass per patched run (site x prompt), the prompt alone and unpadded,
patched by plain indexing. What tests compare the batched sweeps with, and what bench/patch.py times."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from cortexlens.models.hooked import HookedModel
from cortexlens.models.interventions import real_columns
from cortexlens.patching.activation import Site
from cortexlens.patching.tasks import TaskBatch


def _alone(batch: dict[str, torch.Tensor], i: int, cols: torch.Tensor) -> dict[str, torch.Tensor]:
    inputs = {"input_ids": batch["input_ids"][i, cols][None]}
    inputs["attention_mask"] = torch.ones_like(inputs["input_ids"])  # [1, n]
    return inputs


@torch.no_grad()
def naive_sweep(model: HookedModel, task: TaskBatch, sites: Sequence[Site], mode: str = "denoising") -> torch.Tensor:
    """LD of every (site, prompt), [n_sites, n_prompts], one forward pass each."""
    base, source = (task.corrupted, task.clean) if mode == "denoising" else (task.clean, task.corrupted)
    base_cols, source_cols = real_columns(base["attention_mask"]), real_columns(source["attention_mask"])
    out = torch.zeros(len(sites), len(task), dtype=torch.float64)
    for i in range(len(task)):
        source_in = _alone(source, i, source_cols[i])
        points = sorted({p for site in sites for p in site.points})
        cache = model.run_with_cache(source_in, points, stop_early=False)
        base_in = _alone(base, i, base_cols[i])
        n = base_in["input_ids"].shape[1]
        for k, site in enumerate(sites):
            positions = range(n) if site.positions is None else [
                p % n for p in ((site.positions,) if isinstance(site.positions, int) else site.positions)]

            def patch(t: torch.Tensor, hook, positions=positions, site=site, cache=cache) -> torch.Tensor:
                t = t.clone()
                for p in positions:
                    if site.heads is None:
                        t[0, p] = cache[hook][0, p]
                    else:
                        heads = (site.heads,) if isinstance(site.heads, int) else site.heads
                        for h in heads:
                            t[0, p, h] = cache[hook][0, p, h]
                return t

            with model.hooks([(point, patch) for point in site.points]):
                logits = model.forward(base_in).logits[0, -1]
            out[k, i] = float(logits[task.answer[i]] - logits[task.distractor[i]])
    return out
