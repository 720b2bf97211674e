"""A Hugging Face model with named hook points: read activations by name, or replace them.

The model itself is never modified: hooks are torch forward (pre-)hooks registered for one call and
removed afterwards, so outputs equal plain `transformers` output.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property

import torch
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from cortexlens.models.families import (
    Family,
    ModelDims,
    dims_of,
    family_of,
    hook_width,
    mlp_activation,
    mlp_output_weights,
    output_weights,
)
from cortexlens.models.gradients import GradientCache, Metric, run_with_gradients
from cortexlens.models.hooks import HookPoint

# fn(activation, hook) -> replacement or None, as in TransformerLens: `hook` is the HookPoint, so one
# function serves many sites (hook.name, hook.hook, hook.layer). Activations come as [batch, pos, d],
# attn_z as [batch, pos, n_heads, d_head].
HookFn = Callable[[torch.Tensor, HookPoint], torch.Tensor | None]


class StopForward(Exception):
    """Raised by a hook once every requested activation is captured; skips the rest of the network."""


@dataclass(frozen=True)
class ResolvedSite:
    module: nn.Module
    io: str  # "in" | "out"
    heads: tuple[int, int] | None  # (n_heads, d_head) to unflatten attn_z, else None


class HookedModel:
    """A loaded model, its tokenizer and the map from canonical hook names to its modules."""

    def __init__(self, name: str, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                 device: torch.device) -> None:
        self.name = name
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.device = device
        self.config = model.config
        self.family: Family | None = family_of(self.config)
        self.dims: ModelDims | None = dims_of(self.config) if self.family else None
        self.base: nn.Module = model.base_model

    @property
    def context_length(self) -> int | None:
        """Most positions the model was built for (learned or rotary position tables), if it says."""
        for key in ("max_position_embeddings", "n_positions"):
            if isinstance(value := getattr(self.config, key, None), int) and value > 0:
                return value
        return None

    # ----------------------------------------------------------------- names
    def available_hooks(self) -> tuple[str, ...]:
        return self.family.hooks_for(self.config) if self.family else ()

    def resolve(self, point: HookPoint) -> ResolvedSite:
        if point.is_module:
            return ResolvedSite(self._submodule(point.module_path), "out", None)
        if self.family is None or self.dims is None:
            raise KeyError(f"{self.name}: model type {self.config.model_type!r} has no canonical hooks; "
                           f"use module:<path>")
        if point.hook not in self.available_hooks():
            raise KeyError(f"{self.name} has no hook {point.hook!r}")
        site = self.family.sites[point.hook]
        module = self.base.get_submodule(self.family.site_path(point.hook, point.layer))
        heads = (self.dims.n_heads, self.dims.d_head) if point.hook == "attn_z" else None
        return ResolvedSite(module, site.io, heads)

    def _submodule(self, path: str) -> nn.Module:
        # Paths are as `model.named_modules()` prints them; also accept them relative to the base model.
        for root in (self.model, self.base):
            try:
                return root.get_submodule(path)
            except AttributeError:
                continue
        raise KeyError(f"{self.name} has no module {path!r}")

    def width(self, point: HookPoint) -> int | None:
        """Length of the stored vector for a hook point; None for module hooks (known after a run)."""
        if point.is_module or self.dims is None:
            return None
        return hook_width(point.hook, self.dims)

    def output_weights(self, layer: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """W_O [n_heads, d_head, d_model] and b_O [d_model] of block `layer`'s attention."""
        assert self.family is not None and self.dims is not None
        o_proj = self.base.get_submodule(f"{self.family.block_path(layer)}.{self.family.o_proj}")
        return output_weights(o_proj, self.family, self.dims)

    def mlp_output_weights(self, layer: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """W_out [d_mlp, d_model] and b_out [d_model] of block `layer`'s MLP: its output before any
        post-norm is mlp_post @ W_out + b_out, so neuron i writes mlp_post[i] * W_out[i]."""
        assert self.family is not None
        return mlp_output_weights(self.base.get_submodule(self.family.site_path("mlp_post", layer)))

    @property
    def mlp_activation(self) -> str:
        """The MLP nonlinearity (`relu`, `gelu_new`, `silu`, ...; gated MLPs: the gate's)."""
        return mlp_activation(self.config)

    def final_norm(self) -> nn.Module | None:
        if self.family is None or self.family.final_norm is None:
            return None
        return self.base.get_submodule(self.family.final_norm)

    # ----------------------------------------------------------------- hooks
    @contextmanager
    def hooks(self, fwd_hooks: Sequence[tuple[HookPoint, HookFn]]) -> Iterator[None]:
        """Register `fn` at each hook point for the duration of the block; it is called as
        fn(activation, hook_point). Hooks at one point run in list order, each seeing the previous one's result."""
        handles = [self._register(self.resolve(point), point, fn) for point, fn in fwd_hooks]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()

    @staticmethod
    def _register(site: ResolvedSite, point: HookPoint, fn: HookFn) -> torch.utils.hooks.RemovableHandle:
        def to_view(t: torch.Tensor) -> torch.Tensor:
            return t.unflatten(-1, site.heads) if site.heads else t

        def from_view(t: torch.Tensor) -> torch.Tensor:
            return t.flatten(-2) if site.heads else t

        if site.io == "out":
            def forward_hook(module, args, output):
                tensor = output[0] if isinstance(output, tuple) else output
                new = fn(to_view(tensor), point)
                if new is None:
                    return None
                return (from_view(new), *output[1:]) if isinstance(output, tuple) else from_view(new)
            return site.module.register_forward_hook(forward_hook)

        def pre_hook(module, args, kwargs):
            # Blocks may receive hidden_states as a keyword; leaf modules always positionally.
            tensor = args[0] if args else kwargs["hidden_states"]
            new = fn(to_view(tensor), point)
            if new is None:
                return None
            if args:
                return (from_view(new), *args[1:]), kwargs
            return args, {**kwargs, "hidden_states": from_view(new)}
        return site.module.register_forward_pre_hook(pre_hook, with_kwargs=True)

    # ----------------------------------------------------------------- running
    def forward(self, inputs: dict[str, torch.Tensor]):
        """The model's own forward; decoders skip building a KV cache nobody reads."""
        return self.model(**inputs, use_cache=False) if self._accepts_use_cache else self.model(**inputs)

    @cached_property
    def _accepts_use_cache(self) -> bool:
        return "use_cache" in inspect.signature(self.model.forward).parameters

    @torch.no_grad()  # not inference_mode: cached tensors stay usable in autograd code downstream
    def run_with_cache(self, inputs: dict[str, torch.Tensor], points: Sequence[HookPoint],
                       stop_early: bool = True) -> dict[HookPoint, torch.Tensor]:
        """Run the model once and return the activation at every point (detached, on the model's device).

        With stop_early, the forward pass stops after the last block any point needs, so reading
        layer 2 of a 24-layer model costs 3 blocks and no unembedding.
        """
        cache: dict[HookPoint, torch.Tensor] = {}

        def save(t: torch.Tensor, hook: HookPoint) -> None:
            cache[hook] = t.detach()

        fwd_hooks: list[tuple[HookPoint, HookFn]] = [(p, save) for p in points]
        last_block = self._last_block_needed(points) if stop_early else None
        with self.hooks(fwd_hooks):
            # Registered after the savers, so a saver on the same block's output still runs first.
            stop_handle = self._stop_after(last_block) if last_block is not None else None
            try:
                self.forward(inputs)
            except StopForward:
                pass
            finally:
                if stop_handle is not None:
                    stop_handle.remove()
        return cache

    def run_with_gradients(self, inputs: dict[str, torch.Tensor], points: Sequence[HookPoint], metric: Metric,
                           fwd_hooks: Sequence[tuple[HookPoint, HookFn]] = ()) -> GradientCache:
        """metric(output) (a scalar tensor), the activation at every point and d metric / d activation
        (same shapes; attn_z per head), with `fwd_hooks` applied during the run.

        Autograd is on even inside `torch.no_grad()` or `inference_mode()`; gradients come from
        `torch.autograd.grad`, so no parameter's `.grad` changes, and frozen parameters are fine. Each
        gradient is the total derivative through the rest of the network (also with several points).
        The whole network runs: the metric needs the output.
        """
        return run_with_gradients(self, inputs, points, metric, fwd_hooks)

    def _stop_after(self, layer: int) -> torch.utils.hooks.RemovableHandle:
        def stop(module, args, output):
            raise StopForward
        return self.base.get_submodule(self.family.block_path(layer)).register_forward_hook(stop)

    def _last_block_needed(self, points: Sequence[HookPoint]) -> int | None:
        if self.family is None or not points or any(p.is_module for p in points):
            return None
        return max(p.layer for p in points)
