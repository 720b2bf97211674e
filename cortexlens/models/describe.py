"""What a model offers (family, sizes, hooks, module names) from its config.json alone, without weights.

Validation uses this so that `cortexlens check` is fast and can name a bad layer before a
multi-gigabyte download starts. Neither torch nor transformers is imported unless a `module:` hook
asks for the model's module tree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from cortexlens.errors import ModelLoadError
from cortexlens.models.families import Family, ModelDims, dims_of, family_of
from cortexlens.models.model_config import ModelConfig
from cortexlens.models.sources import TRAINED_ALIASES, ResolvedSource


@dataclass
class ModelInfo:
    name: str
    config: Any  # a ModelConfig, or a transformers PretrainedConfig of a loaded model
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
        import torch

        from cortexlens.models.loading import model_class

        config = self.config.to_transformers() if isinstance(self.config, ModelConfig) else self.config
        cls = model_class(config)
        with torch.device("meta"):
            model = cls.from_config(config) if hasattr(cls, "from_config") else cls(config)
        base_prefix = getattr(model, "base_model_prefix", "")
        names = {name for name, _ in model.named_modules() if name}
        # Paths relative to the base model are accepted too (HookedModel._submodule does the same).
        names |= {n[len(base_prefix) + 1:] for n in names if base_prefix and n.startswith(base_prefix + ".")}
        return frozenset(names)


def read_config(resolved: ResolvedSource, key: str) -> ModelConfig:
    """config.json of a local directory, or of a hub repository (one small download, or the HF cache).
    `key` names the params entry in errors."""
    if resolved.is_local:
        directory = Path(resolved.location)
        if not directory.is_dir():
            if resolved.alias in TRAINED_ALIASES:
                raise ModelLoadError(f"{key}: the {resolved.alias} model is not trained yet ({resolved.location}); "
                                     f"run the {TRAINED_ALIASES[resolved.alias]} stage first")
            raise ModelLoadError(f"{key}: directory not found: {resolved.location}")
        path = directory / "config.json"
        if not path.is_file():
            raise ModelLoadError(f"{key}: no config.json in {resolved.location}")
    else:
        path = _hub_config(resolved, key)
    try:
        config = ModelConfig.from_file(path)
    except (OSError, ValueError) as err:
        raise ModelLoadError(f"{key}: cannot read {path}: {err}") from None
    if not isinstance(config.data.get("model_type"), str):
        raise ModelLoadError(f"{key}: {path} has no model_type")
    return config


def _hub_config(resolved: ResolvedSource, key: str) -> Path:
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(resolved.location, "config.json", revision=resolved.revision))
    except Exception as err:  # noqa: BLE001 -- offline, unknown repository, gated, bad revision: one line
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ModelLoadError(f"{key}: cannot load the config of {resolved.location!r}: {first}") from None


def describe_model(name: str, resolved: ResolvedSource, toy_config: ModelConfig | None = None) -> ModelInfo:
    """ModelInfo for a params entry. A model the pipeline trains (toy, facts) has its config from its
    stage's params (`toy_config`), since the model itself may not be trained yet."""
    if resolved.alias in TRAINED_ALIASES and toy_config is not None:
        return ModelInfo(name, toy_config)
    return ModelInfo(name, read_config(resolved, f"models.{name}.source"))
