"""What trained sparse coders are read for: sparse latents, attention-head attribution, transcoder circuits.

* Head attribution (after Kissane et al. 2024, "Interpreting Attention Layer Outputs with Sparse
  Autoencoders"): an SAE on attn_z (heads concatenated head-major) has decoder rows W_dec[i] of
  n_heads blocks of d_head; latent i's attribution to head h is ||W_dec[i, h]|| / sum_h' ||W_dec[i, h']||.
  A latent is dominated by one head when its largest share is >= `dominated` (default 0.5).
* Connections (after Dunefsky et al. 2024, "Transcoders Find Interpretable LLM Feature Circuits"): for
  transcoders at layers L < L', connection(i -> j) = W_dec^L[i] . W_enc^L'[:, j] (what latent i writes,
  read by latent j's encoder), input-independent. Attribution on a prompt: sum over its tokens t of
  f^L_i(t) connection(i -> j), over the tokens where j is active.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

DOMINATED = 0.5


def feature_rows(sae: Any, batches: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]], dataset: str
                 ) -> list[dict[str, Any]]:
    """Every nonzero latent of every token: batches of (doc_id [n], pos [n], x [n, d_in])."""
    rows: list[dict[str, Any]] = []
    for doc_id, pos, x in batches:
        f = sae.encode(torch.from_numpy(np.ascontiguousarray(x)))  # [n, d_sae]
        t, j = torch.nonzero(f, as_tuple=True)
        values = f[t, j].numpy()
        t, j = t.numpy(), j.numpy()
        rows += [{"sae_id": sae.sae_id, "dataset": dataset, "doc_id": int(doc_id[a]), "pos": int(pos[a]),
                  "feature": int(b), "value": float(v)} for a, b, v in zip(t, j, values)]
    return rows


def head_shares(W_dec: torch.Tensor, n_heads: int) -> torch.Tensor:
    """W_dec [d_sae, n_heads * d_head] -> [d_sae, n_heads]: each latent's decoder norm share per head."""
    norms = W_dec.reshape(W_dec.shape[0], n_heads, -1).norm(dim=-1)  # [d_sae, n_heads]
    return norms / norms.sum(-1, keepdim=True).clamp_min(1e-12)


def head_rows(sae: Any, n_heads: int) -> list[dict[str, Any]]:
    shares = head_shares(sae.W_dec, n_heads).numpy()
    return [{"sae_id": sae.sae_id, "feature": i, "head": h, "norm_frac": float(shares[i, h])}
            for i in range(shares.shape[0]) for h in range(n_heads)]


def dominated_fraction(shares: torch.Tensor, threshold: float = DOMINATED) -> float:
    """Fraction of latents whose largest head share is >= threshold."""
    return float((shares.max(-1).values >= threshold).float().mean())


def connections(upstream: Any, downstream: Any) -> torch.Tensor:
    """[d_sae_L, d_sae_L'] = W_dec^L @ W_enc^L'."""
    return upstream.W_dec @ downstream.W_enc


def top_edges(scores: torch.Tensor, per_target: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(source [m], target [m], score [m]): each target's `per_target` strongest sources by |score|."""
    k = min(per_target, scores.shape[0])
    top = scores.abs().topk(k, dim=0)  # [k, d_target]
    src = top.indices.numpy()
    tgt = np.broadcast_to(np.arange(scores.shape[1]), src.shape)
    vals = scores.gather(0, top.indices).numpy()
    keep = vals != 0
    return src[keep], tgt[keep], vals[keep]


def attributions(upstream: Any, downstream: Any, x_up: torch.Tensor, x_down: torch.Tensor) -> torch.Tensor:
    """One prompt's tokens: x_up [t, d_in^L], x_down [t, d_in^L'] -> [d_sae_L, d_sae_L']."""
    f_up = upstream.encode(x_up)  # [t, d_L]
    active = (downstream.encode(x_down) != 0).float()  # [t, d_L']
    return (f_up.T @ active) * connections(upstream, downstream)


def edge_rows(source: str, target: str, kind: str, prompt: int, scores: torch.Tensor, per_target: int
              ) -> list[dict[str, Any]]:
    s, t, v = top_edges(scores, per_target)
    return [{"source_sae": source, "source_feature": int(a), "target_sae": target, "target_feature": int(b),
             "kind": kind, "prompt": prompt, "score": float(c)} for a, b, c in zip(s, t, v)]
