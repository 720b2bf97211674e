"""What one run of the brain stage scores for a model: its feature sets (init x features x hook point).

Pure Python (the params check imports it; no torch). A trained model `m` is scored with its own
extractions; its random-init control (`brain.controls[m]`, else the one model of `extract.models` with
`init: random` and the same source and revision) with the control's extractions, rows labelled
`init = 'random'` and `model = m`; each SAE of `brain.saes` on `m` adds the feature space `sae:<id>`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from cortexlens.models.hooks import HookPoint

if TYPE_CHECKING:
    from cortexlens.config.study import Study


@dataclass(frozen=True)
class FeatureSet:
    init: str  # trained | random (of the model under test)
    features: str  # activations | sae:<id>
    store_model: str  # whose extraction the features come from
    point: HookPoint
    sae: str | None = None

    @property
    def unit(self) -> str:
        """The result unit (a file name): one per feature set."""
        features = self.features.replace(":", "=")
        return f"init={self.init}-features={features}-hook={self.point.hook}-layer={self.point.layer}"


def init_of(study: Study, model: str) -> str:
    return study.params.models[model].init


def control_of(study: Study, model: str) -> tuple[str | None, str | None]:
    """(the random-init control of `model`, a problem line when it cannot be found)."""
    section = study.params.brain
    if not section.random_control or init_of(study, model) == "random":
        return None, None
    extract = study.params.extract
    if model in section.controls:
        name = section.controls[model]
        key = f"brain.controls.{model}"
        if name not in study.params.models:
            return None, f"{key}: unknown model {name!r} (defined in models: {', '.join(study.params.models)})"
        if init_of(study, name) != "random":
            return None, f"{key}: {name!r} is not a random-init model (give it init: random)"
        if name not in extract.models:
            return None, f"{key}: {name!r} is not in extract.models ({', '.join(extract.models)})"
        return name, None
    spec = study.params.models[model]
    found = [n for n in extract.models if n != model and study.params.models[n].init == "random"
             and (study.params.models[n].source, study.params.models[n].revision) == (spec.source, spec.revision)]
    if len(found) == 1:
        return found[0], None
    if found:
        return None, (f"brain.controls: {model} has several random-init copies ({', '.join(found)}); "
                      f"name one in brain.controls.{model}")
    return None, (f"brain.models: {model} has no random-init control: add `{model}_random: {{source: {spec.source}, "
                  f"init: random}}` to models and to extract.models (or set brain.random_control: false)")


def brain_points(study: Study, model: str) -> tuple[list[HookPoint], list[str]]:
    """The hook points scored for `model` (brain.hooks at brain.layers, `all`: every extracted layer)."""
    section = study.params.brain
    return study.requested_points(model, "brain", section.hooks, section.layers)


def sae_entries(study: Study) -> list[tuple[int, str, str | None]]:
    """(index, sae id, model named in params or None) of brain.saes."""
    out = []
    for i, entry in enumerate(study.params.brain.saes):
        out.append((i, entry, None) if isinstance(entry, str) else (i, entry.id, entry.model))
    return out


def feature_sets(study: Study, model: str, sae_points: dict[str, HookPoint] | None = None) -> list[FeatureSet]:
    """Every feature set of `model`, trained first, then its control, then its SAEs' latents.
    `sae_points`: sae id -> hook point, for the SAEs that encode this model."""
    points, _ = brain_points(study, model)
    init = init_of(study, model)
    sets = [FeatureSet(init, "activations", model, p) for p in points]
    control, _ = control_of(study, model)
    if control is not None:
        sets += [FeatureSet("random", "activations", control, p) for p in points]
    for sae_id, point in (sae_points or {}).items():
        sets.append(FeatureSet(init, f"sae:{sae_id}", model, point, sae_id))
    return sets
