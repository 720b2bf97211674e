"""The sparsity analysis's params section, its SQL view and its checks (see cortexlens.plugins)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field, field_validator

from cortexlens.config.schema import Name, PositiveInt, Section, Seed
from cortexlens.plugins import Plugin
from cortexlens.store.views import ResultView

if TYPE_CHECKING:
    from cortexlens.config.study import Study

NEURON_HOOKS = ("mlp_post", "post")  # what the down projection weighs: a neuron's activation


class SparsityParams(Section):
    """Activation sparsity of MLP neurons: active fractions, CETT, PPL-p% sparsity, top-k."""

    models: list[Name]
    """Models to measure (each also in extract.models); the stage runs once per model (dvc.yaml's
    matrix), so `[]` runs none."""
    datasets: dict[Name, Name] = Field(default_factory=dict)
    """Dataset per model (model: dataset); default: the first of extract.datasets. Stored mlp_post
    activations are read when that extraction has them, else computed from the model."""
    hook: str = "mlp_post"
    """The neurons' activations (mlp_post: for gated MLPs act(gate) * up)."""
    layers: Literal["all"] | list[int] = "all"
    threshold: float = Field(0.1, ge=0)
    """A neuron of a non-ReLU MLP counts as active when |activation| > threshold (ReLU: when nonzero)."""
    quantiles: list[Annotated[float, Field(ge=0, le=1)]] = Field(default_factory=lambda: [0.1, 0.5, 0.9])
    """Quantiles over tokens of the active fraction."""
    max_positions: PositiveInt = 32
    """Positions reported in the active fraction by position."""
    frequency_buckets: PositiveInt = 5
    """Token-frequency buckets (0: rarest tokens) of the active fraction by frequency."""
    cett_target: float = Field(0.2, ge=0, lt=1)
    """The CETT at which each layer's activation ratio is reported ("Sparsing Law" uses 0.2)."""
    sweep: list[Annotated[float, Field(ge=0, lt=1)]] = Field(default_factory=lambda: [0.0, 0.05, 0.1, 0.2, 0.3, 0.4,
                                                                                      0.5])
    """CETT targets applied in the forward pass for the loss-vs-sparsity curve."""
    ppl_percent: float = Field(1.0, gt=0)
    """p of PPL-p% sparsity: the highest sparsity whose perplexity rises by at most p% (encoders:
    whose final-layer representation changes by at most p/100 in 1 - cosine)."""
    topk: list[Annotated[float, Field(gt=0, le=1)]] = Field(default_factory=lambda: [0.01, 0.05, 0.1, 0.25, 0.5])
    """Top-k enforcement: k as fractions of the MLP width, kept per token in every measured layer."""
    sample_tokens: PositiveInt = 2048
    """Tokens (a seeded sample) per layer on which each CETT threshold is searched."""
    eval_docs: PositiveInt = 256
    """Documents the loss (or representation) is measured on, with and without interventions."""
    max_docs: PositiveInt = 2000
    """Documents read when activations are computed from the model rather than the store."""
    batch_size: PositiveInt = 32
    seed: Seed = 0

    @field_validator("sweep", "topk")
    @classmethod
    def _ascending(cls, values: list[float]) -> list[float]:
        return sorted(set(values))


def dataset_of(study: Study, model: str) -> str:
    section, extract = study.params.sparsity, study.params.extract
    return section.datasets.get(model) or extract.datasets[0]


def check(study: Study) -> list[str]:
    section = getattr(study.params, "sparsity", None)
    if section is None:
        return []
    extract = study.params.extract
    if extract is None:
        return ["sparsity: needs the extract section (its models' activations and documents)"]
    problems = []
    if section.hook not in NEURON_HOOKS:
        problems.append(f"sparsity.hook: {section.hook!r} is not an MLP neuron hook; sparsity reads mlp_post "
                        f"(the activations the MLP's down projection weighs)")
    for i, model in enumerate(section.models):
        if model not in extract.models:
            problems.append(f"sparsity.models[{i}]: {model!r} is not in extract.models "
                            f"({', '.join(extract.models)})")
            continue
        info = study.model_info(model)
        if info.family is None:
            problems.append(f"sparsity.models[{i}]: {model} is a {info.config.model_type!r} model without "
                            f"canonical MLP neurons (mlp_post)")
        elif section.layers != "all":
            n = info.n_layers
            problems += [f"sparsity.layers[{j}]: layer {layer} out of range for {model} (layers 0-{n - 1})"
                         for j, layer in enumerate(section.layers) if not -n <= layer < n]
    for model, dataset in section.datasets.items():
        if model not in section.models:
            problems.append(f"sparsity.datasets.{model}: {model!r} is not in sparsity.models")
        if dataset not in study.params.datasets:
            problems.append(f"sparsity.datasets.{model}: unknown dataset {dataset!r} "
                            f"(defined in datasets: {', '.join(study.params.datasets)})")
    return problems


SPARSITY_VIEW = ResultView(
    "sparsity", table="sparsity", stage="sparsity",
    columns={"model": "VARCHAR", "dataset": "VARCHAR", "hook": "VARCHAR", "layer": "INTEGER",
             "metric": "VARCHAR", "param": "VARCHAR", "value": "DOUBLE"},
    description="one row per (model, dataset, layer, metric, param); layer is NULL for whole-model metrics",
)

PLUGIN = Plugin(sections={"sparsity": SparsityParams}, views=[SPARSITY_VIEW], checks=[check])
