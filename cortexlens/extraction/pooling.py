"""Document-level features from token activations: mean over real tokens, first or last real token."""

from __future__ import annotations

import torch

POOLINGS = ("mean", "first", "last")


def pool(acts: torch.Tensor, mask: torch.Tensor, kind: str) -> torch.Tensor:
    """acts [batch, pos, d], mask [batch, pos] bool -> [batch, d] (computed in float32)."""
    acts = acts.float()
    if kind == "mean":
        weights = mask.unsqueeze(-1).float()  # [batch, pos, 1]
        return (acts * weights).sum(1) / weights.sum(1).clamp(min=1)
    positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)  # [batch, pos]
    if kind == "first":
        index = torch.where(mask, positions, mask.shape[1]).min(1).values  # [batch]
    elif kind == "last":
        index = torch.where(mask, positions, -1).max(1).values  # [batch]
    else:
        raise ValueError(f"unknown pooling {kind!r}")
    return acts[torch.arange(acts.shape[0], device=acts.device), index.clamp(min=0)]
