"""Where each canonical hook lives in the unmodified Hugging Face module tree of each architecture family.

A Site is a module path under block `L` and whether the activation is that module's input (a forward
pre-hook) or its output (a forward hook). Nothing is re-implemented: reading a site reads exactly the
tensor Hugging Face computes. Semantics follow TransformerLens:

- resid_pre / resid_post: the block's input / output.
- attn_out: what the attention sublayer adds to the residual stream (after its output projection and bias).
- attn_z: the per-head attention result before the output projection, [pos, n_heads, d_head].
- resid_mid / mlp_in: the residual stream entering the norm in front of the MLP (pre-norm value).
- mlp_pre / mlp_post: MLP neurons before / after the nonlinearity (for gated MLPs: the gate before the
  nonlinearity, and act(gate) * up, i.e. the input of the down projection), [pos, d_mlp].
- mlp_out: what the MLP adds to the residual stream.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # not imported at run time: `cortexlens check` reads configs without torch
    import torch

BLOCK = ""  # the block module itself


@dataclass(frozen=True)
class Site:
    module: str  # path under `blocks.{L}`; BLOCK for the block itself
    io: Literal["in", "out"]


@dataclass(frozen=True)
class ModelDims:
    n_layers: int
    d_model: int
    n_heads: int
    d_head: int
    d_mlp: int
    vocab_size: int


@dataclass(frozen=True)
class Family:
    """How one architecture family lays out its blocks."""

    name: str
    model_types: tuple[str, ...]  # values of config.model_type served by this family
    blocks: str  # path of the block ModuleList under the base model
    sites: dict[str, Site]
    o_proj: str  # attention output projection under the block (its input is hook_z)
    o_proj_is_conv1d: bool  # GPT-2's Conv1D stores W as [d_in, d_out]; nn.Linear as [d_out, d_in]
    final_norm: str | None  # under the base model; applied after the last block, if any

    def block_path(self, layer: int) -> str:
        return f"{self.blocks}.{layer}"

    def site_path(self, hook: str, layer: int) -> str:
        site = self.sites[hook]
        return self.block_path(layer) + (f".{site.module}" if site.module else "")

    def hooks_for(self, config: Any) -> tuple[str, ...]:
        """Canonical aliases this model has (a parallel-residual block has no resid_mid)."""
        if getattr(config, "use_parallel_residual", False) or getattr(config, "parallel_attn", False):
            return tuple(h for h in self.sites if h != "resid_mid")
        return tuple(self.sites)


def _decoder_sites(attn: str, o_proj: str, mlp_norm: str, up: str, down: str, mlp: str = "mlp",
                   attn_out: Site | None = None, mlp_out: Site | None = None) -> dict[str, Site]:
    return {
        "resid_pre": Site(BLOCK, "in"),
        "attn_z": Site(o_proj, "in"),
        "attn_out": attn_out or Site(attn, "out"),
        "resid_mid": Site(mlp_norm, "in"),
        "mlp_in": Site(mlp_norm, "in"),
        "mlp_pre": Site(up, "out"),
        "mlp_post": Site(down, "in"),
        "mlp_out": mlp_out or Site(mlp, "out"),
        "resid_post": Site(BLOCK, "out"),
    }


GPT2 = Family(
    name="gpt2", model_types=("gpt2",), blocks="h",
    sites=_decoder_sites("attn", "attn.c_proj", "ln_2", "mlp.c_fc", "mlp.c_proj"),
    o_proj="attn.c_proj", o_proj_is_conv1d=True, final_norm="ln_f",
)
GPT_NEOX = Family(
    name="gpt_neox", model_types=("gpt_neox",), blocks="layers",
    sites=_decoder_sites("attention", "attention.dense", "post_attention_layernorm",
                         "mlp.dense_h_to_4h", "mlp.dense_4h_to_h"),
    o_proj="attention.dense", o_proj_is_conv1d=False, final_norm="final_layer_norm",
)
LLAMA = Family(
    name="llama", model_types=("llama", "qwen2", "qwen3", "mistral", "gemma"), blocks="layers",
    sites=_decoder_sites("self_attn", "self_attn.o_proj", "post_attention_layernorm",
                         "mlp.gate_proj", "mlp.down_proj"),
    o_proj="self_attn.o_proj", o_proj_is_conv1d=False, final_norm="norm",
)
# Gemma 2/3 normalise each sublayer's output before adding it to the residual stream, so what a
# sublayer adds (attn_out, mlp_out) is the output of that post-norm, as in TransformerLens.
GEMMA2 = Family(
    name="gemma2", model_types=("gemma2", "gemma3_text"), blocks="layers",
    sites=_decoder_sites("self_attn", "self_attn.o_proj", "pre_feedforward_layernorm",
                         "mlp.gate_proj", "mlp.down_proj",
                         attn_out=Site("post_attention_layernorm", "out"),
                         mlp_out=Site("post_feedforward_layernorm", "out")),
    o_proj="self_attn.o_proj", o_proj_is_conv1d=False, final_norm="norm",
)
# BERT is post-norm: each sublayer's sum passes through a LayerNorm. resid_mid/mlp_in are that sum
# before the norm (TransformerLens' convention); resid_post is the block output after its last norm.
BERT = Family(
    name="bert", model_types=("bert", "roberta", "xlm-roberta"), blocks="encoder.layer",
    sites={
        "resid_pre": Site(BLOCK, "in"),
        "attn_z": Site("attention.output.dense", "in"),
        "attn_out": Site("attention.output.dense", "out"),
        "resid_mid": Site("attention.output.LayerNorm", "in"),
        "mlp_in": Site("attention.output.LayerNorm", "in"),
        "mlp_pre": Site("intermediate.dense", "out"),
        "mlp_post": Site("output.dense", "in"),
        "mlp_out": Site("output.dense", "out"),
        "resid_post": Site(BLOCK, "out"),
    },
    o_proj="attention.output.dense", o_proj_is_conv1d=False, final_norm=None,
)

FAMILIES: tuple[Family, ...] = (GPT2, GPT_NEOX, LLAMA, GEMMA2, BERT)
SUPPORTED_MODEL_TYPES: tuple[str, ...] = tuple(t for f in FAMILIES for t in f.model_types)


def family_of(config: Any) -> Family | None:
    """The family serving this config, or None (then only `module:` hooks are available)."""
    for family in FAMILIES:
        if config.model_type in family.model_types:
            return family
    return None


def dims_of(config: Any) -> ModelDims:
    """Sizes from a config; Hugging Face's attribute_map makes GPT-2's n_layer etc. readable as these."""
    d_model = config.hidden_size
    n_heads = config.num_attention_heads
    d_head = getattr(config, "head_dim", None) or d_model // n_heads
    d_mlp = getattr(config, "intermediate_size", None) or getattr(config, "n_inner", None) or 4 * d_model
    return ModelDims(
        n_layers=config.num_hidden_layers, d_model=d_model, n_heads=n_heads, d_head=d_head,
        d_mlp=d_mlp, vocab_size=config.vocab_size,
    )


def hook_width(hook: str, dims: ModelDims) -> int:
    """Length of one stored activation vector for a canonical hook (attn_z is flattened head-major)."""
    if hook == "attn_z":
        return dims.n_heads * dims.d_head
    if hook in ("mlp_pre", "mlp_post"):
        return dims.d_mlp
    return dims.d_model


def output_weights(o_proj: torch.nn.Module, family: Family,
                   dims: ModelDims) -> tuple[torch.Tensor, torch.Tensor | None]:
    """W_O [n_heads, d_head, d_model] and b_O [d_model] (or None) of an attention output projection."""
    weight = o_proj.weight
    w_in_out = weight if family.o_proj_is_conv1d else weight.T  # [n_heads * d_head, d_model]
    w_o = w_in_out.reshape(dims.n_heads, dims.d_head, w_in_out.shape[-1])
    return w_o, getattr(o_proj, "bias", None)


def mlp_activation(config: Any) -> str:
    """The MLP nonlinearity's name as the config gives it (`gelu_new`, `silu`, `relu`, ...)."""
    for key in ("hidden_activation", "hidden_act", "activation_function"):
        value = getattr(config, key, None)
        if isinstance(value, str):
            return value
    return "unknown"


def is_relu(activation: str) -> bool:
    """ReLU-family nonlinearities give exact zeros, so an inactive neuron is exactly 0."""
    return activation in ("relu", "relu2", "relu6", "squared_relu", "reglu")


def mlp_output_weights(down: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor | None]:
    """W_out [d_mlp, d_model] and b_out [d_model] (or None) of an MLP's output projection (the module
    whose input is mlp_post): GPT-2's Conv1D stores [d_in, d_out] already, nn.Linear [d_out, d_in]."""
    weight = down.weight
    w_out = weight if type(down).__name__ == "Conv1D" else weight.T  # [d_mlp, d_model]
    return w_out, getattr(down, "bias", None)
