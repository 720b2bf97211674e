"""CETT, the cumulative error of tail truncation (after "Sparsing Law", Luo et al. 2024).

Neuron i of an MLP writes a_i * W_out[i] into the residual stream (a = mlp_post, W_out [d_mlp, d_model]).
Its contribution's norm is |a_i| * ||W_out[i]||. For a threshold eps, truncating the neurons whose
contribution is smaller than eps changes the MLP's output by the sum of those contributions, so

    CETT(eps) = || sum_{i: |a_i| ||W_out[i]|| < eps} a_i W_out[i] || / || sum_i a_i W_out[i] ||   (per token)

and the activation ratio at eps is the fraction of neurons kept (contribution >= eps). For a target
CETT (0.2 in the paper), eps is searched per layer so that the mean CETT over tokens equals it; the
activation ratio there measures how sparse the layer can be made at that bounded error. Everything is
vectorised over tokens: one matrix product per eps.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def neuron_norms(w_out: torch.Tensor) -> torch.Tensor:
    """||W_out[i]|| per neuron: [d_mlp]."""
    return w_out.norm(dim=1)


def contributions(acts: torch.Tensor, w_norms: torch.Tensor) -> torch.Tensor:
    """|a_i| * ||W_out[i]||: [tokens, d_mlp]."""
    return acts.abs() * w_norms


def cett(acts: torch.Tensor, w_out: torch.Tensor, eps: float, w_norms: torch.Tensor | None = None) -> torch.Tensor:
    """CETT(eps) per token: [tokens]. acts [tokens, d_mlp], w_out [d_mlp, d_model].

    A token whose MLP output is exactly zero has CETT 0 (nothing to lose)."""
    w_norms = neuron_norms(w_out) if w_norms is None else w_norms
    small = contributions(acts, w_norms) < eps  # [tokens, d_mlp]
    total = (acts @ w_out).norm(dim=1)  # [tokens]
    tail = ((acts * small) @ w_out).norm(dim=1)  # [tokens]
    return torch.where(total > 0, tail / total.clamp_min(torch.finfo(total.dtype).tiny), torch.zeros_like(total))


def activation_ratio(acts: torch.Tensor, w_norms: torch.Tensor, eps: float) -> torch.Tensor:
    """Fraction of neurons kept at eps (contribution >= eps), per token: [tokens]."""
    return (contributions(acts, w_norms) >= eps).float().mean(dim=1)


@dataclass(frozen=True)
class CettThreshold:
    target: float
    eps: float  # the threshold found
    cett: float  # mean CETT reached at eps
    activation_ratio: float  # mean fraction of neurons kept at eps


def search_eps(acts: torch.Tensor, w_out: torch.Tensor, target: float, tolerance: float = 1e-3,
               max_steps: int = 60) -> CettThreshold:
    """The eps whose mean CETT over `acts` equals `target` (within `tolerance`), by bisection.

    Mean CETT is 0 at eps = 0 and 1 above the largest contribution; it rises with eps in practice
    (a vector sum over a growing set of neurons need not be monotone token by token, but the mean
    is), so bisection on [0, max contribution] finds the crossing.
    """
    if not 0 <= target < 1:
        raise ValueError(f"CETT target must be in [0, 1), got {target}")
    w_norms = neuron_norms(w_out)
    if target == 0:
        return CettThreshold(0.0, 0.0, 0.0, float(activation_ratio(acts, w_norms, 0.0).mean()))
    low, high = 0.0, float(contributions(acts, w_norms).max()) * (1 + 1e-6) + 1e-12
    value = 0.0
    for _ in range(max_steps):
        mid = (low + high) / 2
        value = float(cett(acts, w_out, mid, w_norms).mean())
        if abs(value - target) <= tolerance:
            break
        low, high = (mid, high) if value < target else (low, mid)
    return CettThreshold(target, mid, value, float(activation_ratio(acts, w_norms, mid).mean()))


def truncation_mask(acts: torch.Tensor, w_norms: torch.Tensor, eps: float) -> torch.Tensor:
    """True where a neuron is kept (contribution >= eps); same shape as acts, any leading dims."""
    return contributions(acts, w_norms) >= eps
