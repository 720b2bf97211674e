"""Sparsity enforced inside the forward pass, and what it costs.

Two interventions on mlp_post (the neurons' activations, the input of the MLP's down projection):
CETT truncation (zero the neurons whose contribution |a_i| ||W_out[i]|| is below the layer's eps,
"Sparsing Law") and top-k (keep the k largest |a_i| per token, "The Lazy Neuron Phenomenon"). Each
hook also counts the fraction of neurons it keeps on real tokens, so the sparsity reported is the one
the forward pass actually ran at.

The cost: for causal LMs the mean next-token cross-entropy over real tokens (perplexity = exp of
it); for encoders, which have no next-token loss, 1 - the mean cosine between the final layer's
representation of each real token with and without the intervention.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from cortexlens.models.hooked import HookedModel, HookFn
from cortexlens.models.hooks import HookPoint


@dataclass
class KeptCounter:
    """Neurons kept and seen on real tokens, summed over the hooks of one run."""

    kept: float = 0.0
    seen: float = 0.0
    mask: torch.Tensor | None = field(default=None, repr=False)  # [batch, pos] real tokens of the batch

    @property
    def fraction(self) -> float:
        return self.kept / self.seen if self.seen else 1.0

    def count(self, keep: torch.Tensor) -> None:
        """keep: bool [batch, pos, d_mlp]."""
        real = self.mask if self.mask is not None else torch.ones(keep.shape[:2], dtype=torch.bool)
        self.kept += float(keep[real.to(keep.device)].sum())
        self.seen += float(real.sum()) * keep.shape[-1]


def cett_hooks(eps: dict[int, float], w_norms: dict[int, torch.Tensor], counter: KeptCounter
               ) -> list[tuple[HookPoint, HookFn]]:
    """Zero, at each layer's mlp_post, the neurons whose contribution is below that layer's eps."""
    def make(layer: int) -> HookFn:
        def hook(acts: torch.Tensor, point: HookPoint) -> torch.Tensor:
            keep = acts.abs() * w_norms[layer].to(acts.device, acts.dtype) >= eps[layer]  # [batch, pos, d_mlp]
            counter.count(keep)
            return acts * keep
        return hook
    return [(HookPoint("mlp_post", layer), make(layer)) for layer in eps]


def topk_hooks(layers: Sequence[int], k: int, counter: KeptCounter) -> list[tuple[HookPoint, HookFn]]:
    """Keep only the k largest |activations| per token at mlp_post of each layer."""
    def hook(acts: torch.Tensor, point: HookPoint) -> torch.Tensor:
        if k >= acts.shape[-1]:
            keep = torch.ones_like(acts, dtype=torch.bool)
        else:
            index = acts.abs().topk(k, dim=-1).indices  # [batch, pos, k]
            keep = torch.zeros_like(acts, dtype=torch.bool).scatter_(-1, index, True)
        counter.count(keep)
        return acts * keep
    return [(HookPoint("mlp_post", layer), hook) for layer in layers]


@dataclass(frozen=True)
class RunCost:
    """What one (possibly intervened) pass over the evaluation batches gave."""

    loss: float | None  # causal LMs: mean next-token cross-entropy over real tokens
    final: list[torch.Tensor] | None  # encoders: final-layer vectors of real tokens, per batch


def run_cost(model: HookedModel, batches: Iterable[dict[str, torch.Tensor]],
             hooks: Sequence[tuple[HookPoint, HookFn]] = (), counter: KeptCounter | None = None) -> RunCost:
    """One pass over `batches` (tokenised inputs with attention masks) under `hooks`."""
    total, count, finals = 0.0, 0, []
    causal = None
    with torch.inference_mode(), model.hooks(list(hooks)):
        for inputs in batches:
            mask = inputs["attention_mask"].bool()  # [batch, pos]
            if counter is not None:
                counter.mask = mask
            out = model.forward(inputs)
            causal = hasattr(out, "logits") if causal is None else causal
            if causal:
                logits = out.logits[:, :-1].float()  # [batch, pos - 1, vocab]: predicts token t + 1
                target = inputs["input_ids"][:, 1:]
                valid = mask[:, 1:] & mask[:, :-1]
                ce = F.cross_entropy(logits[valid], target[valid], reduction="sum")
                total, count = total + float(ce), count + int(valid.sum())
            else:
                finals.append(out.last_hidden_state[mask].float())  # [real tokens, d_model]
    if causal:
        return RunCost(total / max(count, 1), None)
    return RunCost(None, finals)


def cost_change(clean: RunCost, changed: RunCost) -> tuple[str, float]:
    """(metric name, value): causal LMs `loss_increase` (nats) ; encoders `representation_change`
    (1 - mean cosine of final-layer token vectors)."""
    if clean.loss is not None and changed.loss is not None:
        return "loss_increase", changed.loss - clean.loss
    assert clean.final is not None and changed.final is not None
    cos = torch.cat([F.cosine_similarity(a, b, dim=-1) for a, b in zip(clean.final, changed.final, strict=True)])
    return "representation_change", float(1 - cos.mean())
