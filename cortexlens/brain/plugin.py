"""The brain-alignment analysis's params section, SQL views and checks (see cortexlens.plugins)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field, field_validator, model_validator

from cortexlens.config.schema import Name, PositiveInt, Section
from cortexlens.plugins import Plugin
from cortexlens.store.views import ResultView

if TYPE_CHECKING:
    from cortexlens.config.study import Study

Driver = Literal["semantic", "syntactic", "orthographic"]
Pooling = Literal["mean", "first", "last"]


class SimulatedRoi(Section):
    drivers: dict[Driver, Annotated[float, Field(gt=0)]] = Field(min_length=1)
    """Stimulus properties the region responds to, with their weights (see README "Brain alignment")."""
    noise: float = Field(gt=0)
    """Standard deviation of one presentation's noise, relative to the signal's."""
    n_neuroids: PositiveInt = 50


# The default study's regions: what drives each one and how noisy one presentation is (README "Brain alignment").
DEFAULT_ROIS = {
    "semantic": {"drivers": {"semantic": 1.0}, "noise": 1.0, "n_neuroids": 50},
    "syntactic": {"drivers": {"syntactic": 1.0, "semantic": 0.3}, "noise": 2.0, "n_neuroids": 50},
    "orthographic": {"drivers": {"orthographic": 1.0}, "noise": 1.5, "n_neuroids": 50},
}


def _default_rois() -> dict[str, SimulatedRoi]:
    return {name: SimulatedRoi(**spec) for name, spec in DEFAULT_ROIS.items()}


class SimulatedSubject(Section):
    """A subject whose responses are driven by properties of the stimuli the generator knows."""

    kind: Literal["simulated"]
    name: Name = "sim01"
    dataset: Name
    """The stimuli (a dataset in extract.datasets; kind passages for grouped sentence stimuli)."""
    repetitions: PositiveInt = 4
    rois: dict[Name, SimulatedRoi] = Field(default_factory=_default_rois, min_length=1)
    passage_effect: float = Field(0.3, ge=0, lt=1)
    """Weight of a response component shared by the sentences of a passage (the same in every repetition)."""
    seed: int = 0


class PlantedSubject(Section):
    """Responses = a random linear map of one layer's features of `model` plus noise of sd `noise`."""

    kind: Literal["planted"]
    name: Name = "planted"
    dataset: Name
    model: Name
    hook: str = "resid_post"
    layer: int
    pooling: Pooling = "mean"
    n_neuroids: PositiveInt = 100
    noise: float = Field(1.0, ge=0)
    repetitions: PositiveInt = 4
    seed: int = 0


class ParquetSubjects(Section):
    """Recordings as a Parquet long table: stimulus_id, subject, neuroid, repetition, value[, roi]."""

    kind: Literal["parquet"]
    path: str
    dataset: Name
    """The stimuli: a dataset whose documents carry the recording's stimulus ids (label stimulus_field)."""
    subjects: list[str] | None = None
    """Subjects of the file to score (default: every subject in it)."""


class NiftiSubject(Section):
    """fMRI response estimates as a 4-D NIfTI (a volume per presentation), a mask or an atlas, and events."""

    kind: Literal["nifti"]
    name: Name
    dataset: Name
    images: str
    events: str
    """TSV/CSV: stimulus_id, and optionally volume (0-based) and repetition."""
    mask: str | None = None
    atlas: str | None = None
    """An integer label image: every voxel of a nonzero label is a neuroid, the label its roi."""
    atlas_labels: str | None = None
    """TSV/CSV with index and name for the atlas's labels."""
    roi: Name = "mask"
    """The roi name of the mask's voxels."""

    @model_validator(mode="after")
    def _one_selector(self) -> NiftiSubject:
        if (self.mask is None) == (self.atlas is None):
            raise ValueError("give exactly one of mask and atlas")
        return self


Subject = Annotated[SimulatedSubject | PlantedSubject | ParquetSubjects | NiftiSubject, Field(discriminator="kind")]


class SaeSpec(Section):
    id: Name
    """The SAE folder <paths.models>/sae/<id>/ (SAELens format: cfg.json, sae_weights.safetensors)."""
    model: Name | None = None
    """The model whose activations it encodes; default: its cfg.json's model_name."""


class BrainParams(Section):
    """Cross-validated ridge encoding models per (model, init, hook point, layer) with noise ceilings."""

    models: list[Name]
    """Models to score (each in extract.models); the stage runs once per model, so `[]` runs none."""
    subjects: list[Subject] = Field(default_factory=list)
    random_control: bool = True
    """Also score each model's random-init copy (a model with init: random and the same source)."""
    controls: dict[Name, Name] = Field(default_factory=dict)
    """model: its random-init copy, when there is more than one candidate."""
    hooks: list[str] = Field(default_factory=lambda: ["resid_post"])
    layers: Literal["all"] | list[int] = "all"
    pooling: Pooling = "mean"
    stimulus_field: str = "stimulus_id"
    """The stimuli's label holding each stimulus id (default doc ids when the label is absent)."""
    group_field: str = "group"
    """The stimuli's label holding each stimulus's group (passage, story); absent: one group per stimulus."""
    saes: list[Name | SaeSpec] = Field(default_factory=list)
    """SAEs whose latents are scored as a further feature space (trained models only)."""
    sae_pooling: Literal["tokens", "pooled"] = "tokens"
    """tokens: encode every token, then pool the latents; pooled: encode the pooled vector."""
    folds: int = Field(5, ge=2)
    """Outer folds, grouped by group_field."""
    inner_cv: Literal["group_kfold", "loo"] = "group_kfold"
    """How each neuroid's alpha is chosen on the training rows: grouped k-fold, or exact leave-one-out."""
    inner_folds: int = Field(3, ge=2)
    alphas: list[float] = Field(default_factory=lambda: [0.1, 1.0, 10.0, 100.0, 1e3, 1e4, 1e5, 1e6], min_length=1)
    standardize: bool = True
    """z-score features with each training fold's statistics."""
    ceiling: Literal["split_half", "none"] = "split_half"
    ceiling_splits: PositiveInt = 100
    min_ceiling: float = Field(0.1, ge=0)
    """Neuroids with a lower ceiling get no normalised score (NULL)."""
    clip: bool = True
    """Clip normalised scores into [0, 1] (recorded in `clipped`)."""
    n_permutations: int = Field(100, ge=0)
    null: Literal["fixed_alpha", "refit"] = "fixed_alpha"
    """refit: each permutation chooses its own alphas by the same inner CV (exact, costlier)."""
    save_weights: bool = True
    n_jobs: int = Field(2, ge=1)
    """Feature sets fit in parallel processes (joblib), one BLAS thread each."""
    dtype: Literal["float32", "float64"] = "float32"
    target_batch: PositiveInt = 16384
    """Targets (neuroids times permutation copies) solved at once; bounds memory."""
    seed: int = 0

    @field_validator("alphas")
    @classmethod
    def _positive(cls, values: list[float]) -> list[float]:
        for v in values:
            if v <= 0:
                raise ValueError(f"ridge alphas must be > 0, got {v}")
        return sorted(set(values))


def check(study: Study) -> list[str]:
    section = getattr(study.params, "brain", None)
    if section is None or not section.models:
        return []
    from cortexlens.brain.checks import check_brain

    return check_brain(study)


_ID_COLUMNS = {"model": "VARCHAR", "init": "VARCHAR", "hook": "VARCHAR", "layer": "INTEGER", "dataset": "VARCHAR",
               "subject": "VARCHAR", "roi": "VARCHAR"}
SCORES_VIEW = ResultView(
    "brain_scores", table="brain_scores", stage="brain",
    columns={**_ID_COLUMNS, "neuroid": "VARCHAR", "r": "DOUBLE", "ceiling": "DOUBLE", "r_normalized": "DOUBLE",
             # beyond DESIGN.md's contract (columns may grow)
             "features": "VARCHAR", "features_model": "VARCHAR", "r_normalized_unclipped": "DOUBLE",
             "clipped": "VARCHAR", "reliability": "DOUBLE", "alpha": "DOUBLE"},
    description="one row per (model, init, features, hook, layer, subject, neuroid): held-out r, ceiling, r / ceiling",
)
LAYERS_VIEW = ResultView(
    "brain_layers", table="brain_layers", stage="brain",
    columns={**_ID_COLUMNS, "features": "VARCHAR", "n_neuroids": "INTEGER", "r": "DOUBLE", "ceiling": "DOUBLE",
             "r_normalized": "DOUBLE", "p_value": "DOUBLE", "n_permutations": "INTEGER",
             "r_normalized_unclipped": "DOUBLE", "clipped": "VARCHAR", "null_normalized_q95": "DOUBLE",
             "depth": "DOUBLE"},
    description="per (model, init, features, hook, layer, subject, roi): medians over neuroids and a permutation p",
)

PLUGIN = Plugin(sections={"brain": BrainParams}, views=[SCORES_VIEW, LAYERS_VIEW], checks=[check])
