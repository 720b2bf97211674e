"""Causal tracing (Meng et al. 2022, "Locating and Editing Factual Associations in GPT").

The clean prompt is run with Gaussian noise added to the subject tokens' embeddings (std = `noise` x
the standard deviation of the embedding values at subject tokens over the task's prompts; 3 as in the
paper), so the model loses the subject. One state of the clean run is then restored at a time (the
residual stream after a block, or a window of `window` consecutive MLP or attention outputs centred on
a layer, at one position) and the probability of the answer measured. The indirect effect of a state
is P_restored(answer) - P_noised(answer), averaged over `samples` noise draws and the prompts.

Each noised run is a row of `patch_sweep`: the noise is a per-row hook on the embedding output
(resid_pre of layer 0) registered before the restoring patch, so restoring resid_pre 0 everywhere
undoes it exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from cortexlens.models.hooked import HookedModel, HookFn
from cortexlens.models.hooks import HookPoint
from cortexlens.models.interventions import Patch, Rows, patch_sweep, with_position_ids
from cortexlens.patching.tasks import TaskBatch

EMBED = HookPoint("resid_pre", 0)  # what the embedding layer hands to block 0
KINDS = {"resid": "resid_post", "mlp": "mlp_out", "attn": "attn_out"}


@dataclass(frozen=True)
class Trace:
    kind: str
    layer: int
    pos: int
    prob: float  # mean P(answer) with this state restored


@dataclass(frozen=True)
class Tracing:
    clean_prob: float
    noised_prob: float
    noise_std: float
    traces: list[Trace]


def answer_prob(answer: torch.Tensor, n_prompts: int):
    """metric: P(answer) at each row's last real token; rows of sample s hold prompts s*n .. s*n+n-1."""
    def metric(output, rows: Rows) -> torch.Tensor:
        index = torch.arange(len(rows.prompts), device=output.logits.device)
        logits = output.logits[index, rows.last_positions.to(output.logits.device)].float()  # [rows, vocab]
        targets = answer.to(logits.device)[rows.prompts.to(logits.device) % n_prompts]
        return logits.softmax(-1).gather(1, targets[:, None])[:, 0]
    return metric


def noise_std(model: HookedModel, task: TaskBatch) -> float:
    """Standard deviation of the embedding values at subject tokens over the task's clean prompts."""
    assert task.subject is not None
    embedded = model.run_with_cache(with_position_ids(model, task.clean), [EMBED])[EMBED]  # [n, pos, d]
    return float(embedded[task.subject].float().std())


def window_layers(layer: int, window: int, n_layers: int) -> list[int]:
    """`window` consecutive layers centred on `layer` (Meng et al.), clipped to the model."""
    start = max(0, min(layer - window // 2, n_layers - window))
    return list(range(start, min(n_layers, start + window)))


class Noised:
    """`samples` noised copies of the task's clean prompts (row s*n + i is prompt i under draw s), and
    the patched runs of them: `restored(patches)` with clean states written in, `baseline()` with none."""

    def __init__(self, model: HookedModel, task: TaskBatch, samples: int, noise: float, seed: int,
                 points: Sequence[HookPoint], batch_size: int) -> None:
        if task.subject is None or not bool(task.subject.any()):
            raise ValueError(f"task {task.name}: causal tracing needs subject tokens")
        self.model, self.task, self.samples, self.batch_size = model, task, samples, batch_size
        n = len(task)
        clean = with_position_ids(model, task.clean)
        self.std = noise_std(model, task)
        gen = torch.Generator().manual_seed(seed)
        draws = torch.randn((samples * n, clean["attention_mask"].shape[1], model.dims.d_model), generator=gen)
        subject = task.subject.cpu().repeat(samples, 1)  # [S*n, pos]
        self.noise = (draws * noise * self.std * subject[..., None]).to(model.device)  # [S*n, pos, d]
        self.inputs = {k: v.repeat(samples, *(1,) * (v.ndim - 1)) for k, v in clean.items()}
        cache = model.run_with_cache(clean, sorted(set(points) | {EMBED}), stop_early=False)
        self.cache = {p: t.repeat(samples, *(1,) * (t.ndim - 1)) for p, t in cache.items()}
        self.metric = answer_prob(task.answer, n)
        with torch.no_grad():
            self.clean_prob = float(self.metric(model.forward(clean), Rows(torch.arange(n, device=model.device),
                                                                             clean)).mean())

    @property
    def rows(self) -> int:
        return self.samples * len(self.task)

    def _noise_hooks(self, rows: Rows) -> list[tuple[HookPoint, HookFn]]:
        added = self.noise[rows.prompts.to(self.noise.device)]  # [rows, pos, d]
        return [(EMBED, lambda t, hook: t + added.to(t.dtype))]

    def restored(self, sites: Sequence[tuple[tuple[HookPoint, ...], int | None]],
                 progress: Callable[[int], None] | None = None) -> torch.Tensor:
        """Mean P(answer) over noise draws and prompts with each site's clean states restored, [n_sites].
        A site is (points, positions); positions None restores every position."""
        patches = [Patch(r, points, positions=positions) for points, positions in sites for r in range(self.rows)]
        probs = patch_sweep(self.model, self.inputs, self.inputs, patches, self.metric, self.batch_size,
                            clean_cache=self.cache, row_hooks=self._noise_hooks, progress=progress)
        return probs.float().cpu().reshape(len(sites), self.rows).mean(1)

    @torch.no_grad()
    def baseline(self) -> float:
        """Mean P(answer) of the noised runs with nothing restored."""
        total = 0.0
        for start in range(0, self.rows, self.batch_size):
            index = torch.arange(start, min(start + self.batch_size, self.rows), device=self.model.device)
            rows = Rows(index, {k: v[index.to(v.device)] for k, v in self.inputs.items()})
            with self.model.hooks(self._noise_hooks(rows)):
                total += float(self.metric(self.model.forward(rows.inputs), rows).sum())
        return total / self.rows


def trace(model: HookedModel, task: TaskBatch, kinds: Sequence[str], samples: int, noise: float, window: int,
          seed: int, batch_size: int, progress: Callable[[int], None] | None = None) -> Tracing:
    n_layers = model.dims.n_layers
    points = [HookPoint(KINDS[k], layer) for k in kinds for layer in range(n_layers)]
    noised = Noised(model, task, samples, noise, seed, points, batch_size)
    sites = [(k, layer, pos) for k in kinds for layer in range(n_layers) for pos in task.positions()]
    restore = []
    for kind, layer, pos in sites:
        layers = [layer] if kind == "resid" else window_layers(layer, window, n_layers)
        restore.append((tuple(HookPoint(KINDS[kind], lay) for lay in layers), pos))
    probs = noised.restored(restore, progress)
    traces = [Trace(kind, layer, pos, float(p)) for (kind, layer, pos), p in zip(sites, probs)]
    return Tracing(noised.clean_prob, noised.baseline(), noised.std, traces)


