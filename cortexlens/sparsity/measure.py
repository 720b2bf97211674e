"""The measurements of one model: per layer from its activations, per model from intervened runs.

Rows are (layer, metric, param, value); `layer` is None for whole-model metrics. Metric names (the
`sparsity` view's `metric` column) are documented in the README.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from cortexlens.models.hooked import HookedModel
from cortexlens.models.hooks import HookPoint
from cortexlens.sparsity.activity import ActivityRule, FractionStats, active_counts
from cortexlens.sparsity.cett import CettThreshold, neuron_norms, search_eps
from cortexlens.sparsity.intervene import KeptCounter, RunCost, cett_hooks, cost_change, run_cost, topk_hooks
from cortexlens.sparsity.plugin import SparsityParams
from cortexlens.store.reader import ActivationBatch

Row = tuple[int | None, str, str, float]


class TokenSample:
    """A uniform, seeded sample of `size` rows from a stream of unknown length: each row gets a random
    key and the rows with the smallest keys are kept (so it is exact, whatever the batch sizes)."""

    def __init__(self, size: int, seed: int) -> None:
        self.size = size
        self.rng = np.random.default_rng(seed)
        self.keys = np.empty(0)
        self.rows: np.ndarray | None = None

    def add(self, acts: np.ndarray) -> None:
        keys = np.concatenate([self.keys, self.rng.random(len(acts))])
        rows = acts if self.rows is None else np.concatenate([self.rows, acts])
        if len(keys) > self.size:
            keep = np.sort(np.argpartition(keys, self.size)[:self.size])
            keys, rows = keys[keep], rows[keep]
        self.keys, self.rows = keys, np.ascontiguousarray(rows)

    def tensor(self) -> torch.Tensor:
        assert self.rows is not None, "no rows were added"
        return torch.from_numpy(self.rows)


@dataclass(frozen=True)
class LayerMeasure:
    rows: list[Row]
    thresholds: dict[float, CettThreshold]  # CETT target -> eps found on the sample


def measure_layer(layer: int, batches: Iterable[ActivationBatch], token_ids: Callable[[ActivationBatch], np.ndarray],
                  w_out: torch.Tensor, rule: ActivityRule, settings: SparsityParams) -> LayerMeasure:
    """Active fractions over every token of `batches`, and CETT thresholds on a sample of them.

    w_out: [d_mlp, d_model] of the layer's MLP down projection (float32)."""
    point = HookPoint("mlp_post", layer)
    stats = FractionStats(settings.max_positions, settings.frequency_buckets)
    sample = TokenSample(settings.sample_tokens, settings.seed + layer)
    for batch in batches:
        acts = batch[point]  # [rows, d_mlp]
        stats.add(active_counts(acts, rule), acts.shape[1], batch.pos, token_ids(batch))
        sample.add(acts)
    rows: list[Row] = [(layer, metric, param, value) for metric, param, value in stats.rows(settings.quantiles)]
    acts = sample.tensor()
    targets = sorted({settings.cett_target, *settings.sweep})
    thresholds = {t: search_eps(acts, w_out, t) for t in targets}
    for t, found in thresholds.items():
        param = f"target={t:g}"
        rows += [(layer, "cett", param, found.cett), (layer, "cett_eps", param, found.eps),
                 (layer, "cett_activation_ratio", param, found.activation_ratio)]
    # The headline figure, under one name whatever the configured target (the report plots it).
    chosen = thresholds[settings.cett_target]
    rows.append((layer, "activation_ratio_at_target", f"target={settings.cett_target:g}", chosen.activation_ratio))
    return LayerMeasure(rows, thresholds)


def measure_interventions(model: HookedModel, eval_inputs: Sequence[dict[str, torch.Tensor]],
                          thresholds: dict[int, dict[float, CettThreshold]], settings: SparsityParams) -> list[Row]:
    """Whole-model rows: the CETT sweep applied in the forward pass and top-k enforcement."""
    layers = sorted(thresholds)
    w_norms = {layer: neuron_norms(model.mlp_output_weights(layer)[0].detach().float()) for layer in layers}
    clean = run_cost(model, eval_inputs)
    rows: list[Row] = []
    admissible = [0.0]  # sparsities whose cost stays within p%
    for target in settings.sweep:
        counter = KeptCounter()
        eps = {layer: thresholds[layer][target].eps for layer in layers}
        changed = run_cost(model, eval_inputs, cett_hooks(eps, w_norms, counter), counter)
        param, sparsity = f"target={target:g}", 1 - counter.fraction
        rows += _cost_rows(clean, changed, "", param)
        rows.append((None, "sparsity", param, sparsity))
        if _within(clean, changed, settings.ppl_percent):
            admissible.append(sparsity)
    name = "ppl_p_sparsity" if clean.loss is not None else "representation_p_sparsity"
    rows.append((None, name, f"p={settings.ppl_percent:g}", max(admissible)))
    d_mlp = int(next(iter(w_norms.values())).numel())
    # Fractions of a small MLP can round to the same k (1% and 5% of 16 neurons are both 1): one row each k.
    for k in sorted({max(1, round(fraction * d_mlp)) for fraction in settings.topk}, reverse=True):
        counter = KeptCounter()
        changed = run_cost(model, eval_inputs, topk_hooks(layers, k, counter), counter)
        rows += _cost_rows(clean, changed, "topk_", f"k={k}")
        rows.append((None, "topk_sparsity", f"k={k}", 1 - counter.fraction))
    return rows


def _cost_rows(clean: RunCost, changed: RunCost, prefix: str, param: str) -> list[Row]:
    metric, value = cost_change(clean, changed)
    rows: list[Row] = [(None, prefix + metric, param, value)]
    if clean.loss is not None and not prefix:
        rows.append((None, "ppl_increase", param, math.expm1(value)))  # PPL ratio - 1 = exp(loss change) - 1
    return rows


def _within(clean: RunCost, changed: RunCost, percent: float) -> bool:
    metric, value = cost_change(clean, changed)
    change = math.expm1(value) if metric == "loss_increase" else value
    return change <= percent / 100


def rows_table(model: str, dataset: str, rule: str, rows: list[Row]) -> dict[str, list]:
    """The `sparsity` table's columns for `rows` (what the stage writes per unit)."""
    return {"model": [model] * len(rows), "dataset": [dataset] * len(rows), "hook": ["mlp_post"] * len(rows),
            "layer": [r[0] for r in rows], "metric": [r[1] for r in rows], "param": [r[2] for r in rows],
            "value": [float(r[3]) for r in rows], "param_value": [_number(r[2]) for r in rows],
            "rule": [rule] * len(rows)}


def _number(param: str) -> float | None:
    """The number in a param (`target=0.2`, `k=13`, `pos=4`, `q50` -> 0.5), for plotting; None for `mean`."""
    if "=" in param:
        return float(param.split("=", 1)[1])
    if param.startswith("q") and param[1:].isdigit():
        return int(param[1:]) / 100
    return None
