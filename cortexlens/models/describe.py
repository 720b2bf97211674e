"""What a model offers (family, sizes, hooks, module names) from its config alone, without weights.

Validation uses this so that `cortexlens check` is fast and can name a bad layer before a
multi-gigabyte download starts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import torch
from transformers import PretrainedConfig

from cortexlens.models.families import Family, ModelDims, dims_of, family_of
from cortexlens.models.loading import ResolvedSource, load_config, model_class


@dataclass
class ModelInfo:
    name: str
    config: PretrainedConfig
    family: Family | None = field(init=False)
    dims: ModelDims | None = field(init=False)

    def __post_init__(self) -> None:
        self.family = family_of(self.config)
        self.dims = dims_of(self.config) if self.family else None

    @property
    def n_layers(self) -> int:
        return self.config.num_hidden_layers

    @property
    def hooks(self) -> tuple[str, ...]:
        return self.family.hooks_for(self.config) if self.family else ()

    @cached_property
    def module_names(self) -> frozenset[str]:
        """Module paths of the model class that will be loaded (built on the meta device: no memory)."""
        cls = model_class(self.config)
        with torch.device("meta"):
            model = cls.from_config(self.config) if hasattr(cls, "from_config") else cls(self.config)
        base_prefix = getattr(model, "base_model_prefix", "")
        names = {name for name, _ in model.named_modules() if name}
        # Paths relative to the base model are accepted too (HookedModel._submodule does the same).
        names |= {n[len(base_prefix) + 1:] for n in names if base_prefix and n.startswith(base_prefix + ".")}
        return frozenset(names)


def describe_model(name: str, resolved: ResolvedSource, toy_config: PretrainedConfig | None = None) -> ModelInfo:
    """ModelInfo for a params entry. The toy model's config comes from train_toy params, since the
    model itself may not be trained yet."""
    if resolved.alias == "toy" and toy_config is not None:
        return ModelInfo(name, toy_config)
    return ModelInfo(name, load_config(resolved, f"models.{name}.source"))
