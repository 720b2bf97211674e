"""A sparse coder spliced into the forward pass: what the model loses when the hook point is its reconstruction.

Causal LMs, next-token cross-entropy over real tokens (each document's tokens 1..n-1 predicted):
* loss recovered = (CE_zero - CE_spliced) / (CE_zero - CE_clean), where zero ablation writes 0 at the
  predicted hook point (the target of a transcoder);
* KL = mean over predicted tokens of KL(p_clean || p_spliced).
Encoders: the final layer's representation (last resid_post) clean vs spliced, over real tokens:
mean cosine, and relative change sum ||h_spliced - h_clean|| / sum ||h_clean||.

An SAE replaces its own hook point by decode(encode(x)); a transcoder reads its input hook point and
replaces its target hook point by decode(encode(x_in)) (the target fires after the input in a block).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from cortexlens.data.corpus import Document
from cortexlens.extraction.live import encoded_batches
from cortexlens.models.hooked import HookedModel
from cortexlens.models.hooks import HookPoint


def _flat(t: torch.Tensor) -> torch.Tensor:
    """[batch, pos, ...] -> [batch, pos, width] (attn_z's heads concatenated, head-major)."""
    return t.reshape(*t.shape[:2], -1)


def splice_hooks(coder: Any, x_point: HookPoint, y_point: HookPoint) -> list:
    """Forward hooks that put the coder's prediction at y_point (reading x_point)."""
    seen: dict[str, torch.Tensor] = {}

    def read(t: torch.Tensor, point: HookPoint) -> None:
        seen["x"] = _flat(t)

    def write(t: torch.Tensor, point: HookPoint) -> torch.Tensor:
        x = _flat(t) if x_point == y_point else seen.pop("x")
        f = coder.encode(x.float())
        return coder.decode(f, x.float()).to(t.dtype).reshape(t.shape)

    return [(y_point, write)] if x_point == y_point else [(x_point, read), (y_point, write)]


def _zero(t: torch.Tensor, point: HookPoint) -> torch.Tensor:
    return torch.zeros_like(t)


def _next_token(logits: torch.Tensor, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(log-probs [m, vocab] at predicting positions, targets [m])."""
    ids, mask = inputs["input_ids"], inputs["attention_mask"].bool()
    keep = mask[:, 1:] & mask[:, :-1]  # [batch, pos-1]
    return logits[:, :-1][keep].float().log_softmax(-1), ids[:, 1:][keep]


@torch.inference_mode()
def splice_metrics(model: HookedModel, docs: Sequence[Document], coder: Any, x_point: HookPoint,
                   y_point: HookPoint, max_length: int, padding_side: str = "right") -> dict[str, float]:
    batches = encoded_batches(model, docs, max_length, padding_side)
    hooks = splice_hooks(coder, x_point, y_point)
    probe = model.forward(batches[0])
    if getattr(probe, "logits", None) is not None:
        return _causal(model, batches, hooks, y_point)
    return _encoder(model, batches, hooks)


def _causal(model: HookedModel, batches: list, hooks: list, y_point: HookPoint) -> dict[str, float]:
    ce = {"clean": 0.0, "zero": 0.0, "spliced": 0.0}
    kl, n = 0.0, 0
    for inputs in batches:
        clean, targets = _next_token(model.forward(inputs).logits, inputs)
        with model.hooks([(y_point, _zero)]):
            zero, _ = _next_token(model.forward(inputs).logits, inputs)
        with model.hooks(hooks):
            spliced, _ = _next_token(model.forward(inputs).logits, inputs)
        for name, lp in (("clean", clean), ("zero", zero), ("spliced", spliced)):
            ce[name] -= float(lp.gather(-1, targets[:, None]).sum())
        kl += float((clean.exp() * (clean - spliced)).sum())
        n += len(targets)
    ce = {k: v / n for k, v in ce.items()}
    gap = ce["zero"] - ce["clean"]
    return {"ce_clean": ce["clean"], "ce_zero_ablation": ce["zero"], "ce_spliced": ce["spliced"],
            "loss_recovered": (ce["zero"] - ce["spliced"]) / gap if gap else float("nan"), "kl": kl / n}


def _encoder(model: HookedModel, batches: list, hooks: list) -> dict[str, float]:
    cos, diff, norm, n = 0.0, 0.0, 0.0, 0
    for inputs in batches:
        mask = inputs["attention_mask"].bool()
        clean = model.forward(inputs).last_hidden_state[mask].float()  # [tokens, d_model]
        with model.hooks(hooks):
            spliced = model.forward(inputs).last_hidden_state[mask].float()
        cos += float(torch.nn.functional.cosine_similarity(clean, spliced, dim=-1).sum())
        diff += float((spliced - clean).norm(dim=-1).sum())
        norm += float(clean.norm(dim=-1).sum())
        n += len(clean)
    return {"final_cosine": cos / n, "final_relative_change": diff / norm}
