"""The one way a stage gets a model: `load_for_study(study, name)` -> the hooked model and its identity.

It loads exactly as the extract stage always has (seed, device, dtype, attention implementation from
params.yaml), so every stage that reads a model sees the same weights and records the same identity.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from cortexlens.errors import ConfigError
from cortexlens.models.hooked import HookedModel
from cortexlens.models.identity import ModelIdentity
from cortexlens.models.loading import fingerprint, load_hooked_model, resolve_device
from cortexlens.seeding import seeded

if TYPE_CHECKING:  # cortexlens.config.study imports cortexlens.models.loading: no import at run time
    from cortexlens.config.study import Study


@dataclass(frozen=True)
class LoadedModel:
    model: HookedModel
    identity: ModelIdentity  # what manifests and lineage record


def load_for_study(study: Study, model_name: str) -> LoadedModel:
    """Load `models.<model_name>` of the study with its hooks; ConfigError if the name is not defined."""
    models = study.params.models
    if model_name not in models:
        raise ConfigError(f"models: {model_name!r} is not defined (models: {', '.join(models) or 'none'})")
    spec = models[model_name]
    resolved = study.model_source(model_name)
    init_seed = study.params.seed if spec.init_seed is None else spec.init_seed
    # Seeded before loading: weights a checkpoint lacks (a fresh head) are initialised reproducibly.
    with seeded(study.params.seed):  # weights a checkpoint lacks are initialised reproducibly
        model = load_hooked_model(model_name, resolved, resolve_device(study.params.device), spec.dtype,
                                  spec.attn_implementation, spec.init, init_seed)
    revision = fingerprint(resolved, model.config)
    if spec.init == "random":  # its own model in the store: the source's architecture, none of its weights
        revision = f"random-init:seed={init_seed}:{revision}"
    identity = ModelIdentity(model_name, spec.source, revision, spec.dtype, spec.attn_implementation)
    return LoadedModel(model, identity)
