"""The probe analysis's params section, SQL views and checks (see cortexlens.plugins)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field, field_validator

from cortexlens.config.schema import Name, PositiveInt, Section, Seed
from cortexlens.models.hooks import HookPoint
from cortexlens.plugins import Plugin
from cortexlens.probes.concepts import BUILTIN_CONCEPTS, ConceptSpec, resolve
from cortexlens.store.views import ResultView

if TYPE_CHECKING:
    from cortexlens.config.study import Study


class ProbeParams(Section):
    """Linear probes per (model, concept, hook point, layer, pooling), with control tasks."""

    models: list[Name]
    """Models to probe (each in extract.models); the stage runs once per model, so `[]` runs none."""
    concepts: list[Name | ConceptSpec] = Field(default_factory=lambda: list(BUILTIN_CONCEPTS))
    """Built-in concept names, or {name, dataset, label, group, where} for your own."""
    hooks: list[str] = Field(default_factory=lambda: ["resid_post"])
    """Hook aliases whose pooled features are probed (each extracted)."""
    layers: Literal["all"] | list[int] = "all"
    """Layers of each hook (each extracted); all: every extracted layer."""
    poolings: list[Literal["mean", "first", "last"]] = Field(default_factory=lambda: ["mean", "last"])
    positions: list[int] = Field(default_factory=list)
    """Token-level probes on the activation at these positions (negative: from the end of each document)."""
    folds: int = Field(5, ge=2)
    """Outer cross-validation folds, grouped by lexical item."""
    inner_folds: int = Field(3, ge=2)
    """Inner folds (of each outer training part, grouped too) that choose the regularisation."""
    Cs: list[float] = Field(default_factory=lambda: [0.01, 0.1, 1.0], min_length=1)
    """Inverse L2 strengths the inner cross-validation chooses from."""
    control: bool = True
    """Also fit each probe on control labels (random per lexical item) for selectivity."""
    max_examples: PositiveInt = 400
    """Documents per concept: a seeded subsample, class-balanced, bounds the cost."""
    depth_fraction: float = Field(0.9, gt=0, le=1)
    """Concept depth: the first layer whose accuracy reaches this fraction of the best."""
    n_jobs: int = Field(2, ge=1)
    """Probes fit in parallel processes (joblib)."""
    saes: list[Name] = Field(default_factory=list)
    """SAEs (<paths.models>/sae/<id>/, e.g. from train_sae) of a probed model: k-sparse probes on their
    mean-pooled token latents are reported beside the dense probe of the SAE's hook point and layer."""
    sae_k: PositiveInt = 8
    """Latents a k-sparse probe keeps (chosen on the training rows only)."""
    register_probes: bool = True
    """Register each model's best-layer probes in MLflow (`<study>-probes-<model>`, alias tracking.alias)."""
    seed: Seed = 0

    @field_validator("Cs")
    @classmethod
    def _positive(cls, values: list[float]) -> list[float]:
        for v in values:
            if v <= 0:
                raise ValueError(f"regularisation strengths must be > 0, got {v}")
        return sorted(set(values))


def probe_points(study: Study, model: str) -> list[HookPoint]:
    """The hook points probed for `model`: each of probe.hooks at probe.layers (all: every extracted
    layer of that hook). `check` has made sure they are extracted."""
    section = study.params.probe
    return study.requested_points(model, "probe", section.hooks, section.layers)[0]


def check(study: Study) -> list[str]:
    section = getattr(study.params, "probe", None)
    if section is None or not section.models:  # `models: []` probes nothing: nothing else to check
        return []
    extract = study.params.extract
    if extract is None:
        return ["probe: needs the extract section (the pooled features it probes)"]
    problems = [f"probe.models[{i}]: {m!r} is not in extract.models ({', '.join(extract.models)})"
                for i, m in enumerate(section.models) if m not in extract.models]
    for i, entry in enumerate(section.concepts):
        try:
            resolve(study, entry, f"probe.concepts[{i}]")
        except ValueError as err:
            problems.append(str(err))
    problems += [f"probe.poolings[{i}]: {p!r} is not stored (extract.pooling: {', '.join(extract.pooling)})"
                 for i, p in enumerate(section.poolings) if p not in extract.pooling]
    for model in (m for m in section.models if m in extract.models):
        problems += _hook_problems(study, model)
    return problems + _sae_problems(study)


def _sae_problems(study: Study) -> list[str]:
    """probe.saes: trained by train_sae in this study, or an existing SAELens-format folder."""
    from cortexlens.errors import CortexLensError
    from cortexlens.features.sae import read_cfg, sae_folder

    trained = {s.name for s in getattr(getattr(study.params, "train_sae", None), "saes", [])}
    problems = []
    for i, sae_id in enumerate(study.params.probe.saes):
        if sae_id in trained:
            continue
        try:
            read_cfg(sae_folder(study.models_dir, sae_id), f"probe.saes[{i}]")
        except CortexLensError as err:
            problems += err.lines
    return problems


def _hook_problems(study: Study, model: str) -> list[str]:
    section = study.params.probe
    return study.requested_points(model, "probe", section.hooks, section.layers)[1]


PROBES_VIEW = ResultView(
    "probes", table="probes", stage="probe",
    columns={"model": "VARCHAR", "dataset": "VARCHAR", "concept": "VARCHAR", "hook": "VARCHAR", "layer": "INTEGER",
             "pooling": "VARCHAR", "probe": "VARCHAR", "accuracy": "DOUBLE", "accuracy_sd": "DOUBLE",
             "control_accuracy": "DOUBLE", "selectivity": "DOUBLE", "n_train": "INTEGER", "n_test": "INTEGER",
             # beyond DESIGN.md's contract (columns may grow): what the report reads
             "tier": "VARCHAR", "depth": "DOUBLE", "n_layers": "INTEGER"},
    description="one row per (model, concept, hook, layer, pooling or position) probe, cross-validated",
)
DEPTH_VIEW = ResultView(
    "concept_depth", table="concept_depth", stage="probe",
    columns={"model": "VARCHAR", "concept": "VARCHAR", "best_layer": "INTEGER", "depth_layer": "INTEGER",
             "best_accuracy": "DOUBLE",
             # beyond DESIGN.md's contract (columns may grow): what the report reads
             "hook": "VARCHAR", "pooling": "VARCHAR", "tier": "VARCHAR", "best_depth": "DOUBLE", "depth": "DOUBLE",
             "best_selectivity": "DOUBLE"},
    description="per (model, concept, hook, pooling): the best layer and the first reaching 90% of it",
)

PLUGIN = Plugin(sections={"probe": ProbeParams}, views=[PROBES_VIEW, DEPTH_VIEW], checks=[check])
