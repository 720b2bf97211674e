"""The downstream weights that read an activation: what the illusion check splits a direction against.

For an activation a at a hook point, the readers are the linear maps the rest of the network applies to
it first. A direction component in their null space changes nothing downstream by itself:

* mlp_post (MLP neurons): the down projection, a -> a @ W_out (its null space has d_mlp - d_model
  dimensions at least: Makelov et al.'s setting);
* attn_z of one head: that head's slice of the output projection, z_h -> z_h @ W_O[h];
* the residual stream (resid_pre/mid/post, attn_out, mlp_out): every later block's query, key, value
  and MLP input projections, and the unembedding, each behind its norm's gain (LayerNorm also removes
  the mean); known for the GPT-2 and Llama families.

`reader_matrix` returns M with M @ a the readers' input, so the row space of M is what is read.
"""

from __future__ import annotations

import torch

from cortexlens.models.hooked import HookedModel
from cortexlens.models.hooks import HookPoint

RESIDUAL = ("resid_pre", "resid_mid", "mlp_in", "resid_post", "attn_out", "mlp_out")
# Per family: (attention norm, attention input projections, MLP norm, MLP input projections), under a block.
BLOCK_READERS = {
    "llama": ("input_layernorm", ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"),
              "post_attention_layernorm", ("mlp.gate_proj", "mlp.up_proj")),
    "gpt2": ("ln_1", ("attn.c_attn",), "ln_2", ("mlp.c_fc",)),
}


def _weight_in_out(module: torch.nn.Module) -> torch.Tensor:
    """[d_out, d_in] of a Linear or of GPT-2's Conv1D (which stores [d_in, d_out])."""
    weight = module.weight.detach()
    return weight.T if type(module).__name__ == "Conv1D" else weight


def _behind_norm(weights: list[torch.Tensor], norm: torch.nn.Module) -> torch.Tensor:
    """The projections as maps of the un-normalised stream: W diag(gain), after centring for LayerNorm."""
    gain = norm.weight.detach()
    stacked = torch.cat(weights) * gain[None, :]  # [out, d]
    if isinstance(norm, torch.nn.LayerNorm):
        d = gain.shape[0]
        stacked = stacked @ (torch.eye(d, dtype=stacked.dtype) - 1.0 / d)
    return stacked


def reader_matrix(model: HookedModel, point: HookPoint, head: int | None = None) -> torch.Tensor | None:
    """M [n_read, width]; None where the readers are not known (then the check is not made)."""
    family = model.family.name if model.family else None
    if point.hook == "mlp_post":
        w_out, _ = model.mlp_output_weights(point.layer)  # [d_mlp, d_model]
        return w_out.detach().T.float()
    if point.hook == "attn_z":
        w_o, _ = model.output_weights(point.layer)  # [n_heads, d_head, d_model]
        w_o = w_o.detach().float()
        return w_o[head].T if head is not None else w_o.reshape(-1, w_o.shape[-1]).T
    if point.hook not in RESIDUAL or family not in BLOCK_READERS:
        return None
    attn_norm, attn_in, mlp_norm, mlp_in = BLOCK_READERS[family]
    first = point.layer + (0 if point.hook == "resid_pre" else 1)
    parts = []
    if point.hook in ("resid_mid", "mlp_in", "attn_out"):  # the same block's MLP reads it too
        block = model.base.get_submodule(model.family.block_path(point.layer))
        parts.append(_behind_norm([_weight_in_out(block.get_submodule(m)) for m in mlp_in], block.get_submodule(mlp_norm)))
    for layer in range(first, model.dims.n_layers):
        block = model.base.get_submodule(model.family.block_path(layer))
        parts.append(_behind_norm([_weight_in_out(block.get_submodule(m)) for m in attn_in], block.get_submodule(attn_norm)))
        parts.append(_behind_norm([_weight_in_out(block.get_submodule(m)) for m in mlp_in], block.get_submodule(mlp_norm)))
    unembed = model.model.get_output_embeddings()
    if unembed is not None and model.final_norm() is not None:
        parts.append(_behind_norm([unembed.weight.detach()], model.final_norm()))
    return torch.cat(parts).float() if parts else None


def split(direction: torch.Tensor, readers: torch.Tensor, rtol: float = 1e-5) -> tuple[torch.Tensor, torch.Tensor]:
    """(v_row, v_null): `direction`'s projection onto the readers' row space, and the rest."""
    v = direction.float()
    _, s, vh = torch.linalg.svd(readers, full_matrices=False)  # vh: [k, width]
    basis = vh[s > rtol * s.max()]  # [rank, width]
    row = basis.T @ (basis @ v)
    return row, v - row
