"""The train_sae analysis's params section, SQL views and checks (see cortexlens.plugins)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field, model_validator

from cortexlens.config.schema import Name, PositiveInt, Section, Seed
from cortexlens.models.hooks import HookPoint, UnknownHookError, parse_hook
from cortexlens.plugins import Plugin
from cortexlens.store.views import ResultView

if TYPE_CHECKING:
    from cortexlens.config.study import Study


class SaeSpec(Section):
    """One sparse coder: an SAE on `hook`, or a transcoder from `hook` to `target`."""

    name: Name
    """The SAE id: its folder <paths.models>/sae/<name>/ and its rows in sae_runs."""
    model: Name
    dataset: Name
    """Its token activations train it (each of hook and target extracted on it)."""
    hook: str
    """The input hook point with its layer: `blocks.3.hook_resid_post` or `resid_post@3`-style `{hook}` +
    `layer`."""
    layer: int | None = None
    target: str | None = None
    """A transcoder's target hook point (`mlp_out`); same layer as `hook` unless given in full."""
    arch: str = "topk"
    """relu | topk | batchtopk | jumprelu."""
    expansion: PositiveInt = 8
    """d_sae = expansion x d_in."""
    k: PositiveInt | None = 32
    """Active latents per token (topk, batchtopk)."""
    skip: bool = False
    """Transcoders: a linear skip connection."""
    steps: PositiveInt = 1000
    batch_rows: PositiveInt = 1024
    lr: float = Field(1e-3, gt=0)
    l1: float = Field(1e-3, ge=0)
    """relu: L1 coefficient (normalised units)."""
    l0: float = Field(3.0, ge=0)
    """jumprelu: L0 coefficient (normalised units)."""
    held_out: float = Field(0.1, gt=0, lt=1)
    """Fraction of documents held out for evaluation (seeded; never trained on)."""
    seed: Seed = 0


class TrainSaeParams(Section):
    """Sparse autoencoders and transcoders trained from the activation store."""

    saes: list[SaeSpec] = Field(default_factory=list)
    splice_docs: PositiveInt = 64
    """Held-out documents the spliced forward passes (loss recovered, KL, final-layer change) run on."""
    checkpoint_every: int = Field(200, ge=0)
    """Steps between checkpoints (0: none); a killed run resumes from the last."""
    register_saes: bool = True
    """Register each SAE in MLflow (`<study>-sae-<name>`, alias tracking.alias), a pyfunc that encodes."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int = Field(1, ge=1)
    """torch threads on CPU: one is 4-5x faster than two when another process holds a core (a DVC or
    Prefect run beside it), and a fixed count keeps the weights bitwise reproducible."""

    @model_validator(mode="after")
    def _unique(self) -> TrainSaeParams:
        names = [s.name for s in self.saes]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"SAE names must be unique, repeated: {', '.join(dup)}")
        return self


ARCHS = ("relu", "topk", "batchtopk", "jumprelu")


def spec_points(spec: SaeSpec, key: str, n_layers: int) -> tuple[list[str], HookPoint | None, HookPoint | None]:
    """(problems, input point, target point or None)."""
    def point(text: str, what: str, default_layer: int | None) -> HookPoint | None:
        try:
            hook, layer = parse_hook(text)
        except UnknownHookError as err:
            problems.append(f"{key}.{what}: {err}")
            return None
        layer = default_layer if layer is None else layer
        if layer is None:
            problems.append(f"{key}.{what}: {text!r} names no layer (give `layer`)")
            return None
        return HookPoint(hook, layer % n_layers if layer < 0 else layer)

    problems: list[str] = []
    x = point(spec.hook, "hook", spec.layer)
    y = point(spec.target, "target", x.layer if x else spec.layer) if spec.target else None
    return problems, x, y


def check(study: Study) -> list[str]:
    section = getattr(study.params, "train_sae", None)
    if section is None:
        return []
    problems: list[str] = []
    extract = study.params.extract
    for i, spec in enumerate(section.saes):
        key = f"train_sae.saes[{i}]"
        if spec.arch not in ARCHS:
            problems.append(f"{key}.arch: unknown architecture {spec.arch!r} (one of {', '.join(ARCHS)})")
        if extract is None or spec.model not in extract.models:
            problems.append(f"{key}.model: {spec.model!r} is not in extract.models")
            continue
        if spec.dataset not in extract.datasets_of(spec.model):
            problems.append(f"{key}.dataset: {spec.dataset!r} is not extracted for {spec.model}")
        info = study.model_info(spec.model)
        found, x, y = spec_points(spec, key, info.n_layers)
        problems += found
        extracted = set(study.hook_points(spec.model))
        for what, p in (("hook", x), ("target", y)):
            if p is not None and p not in extracted:
                problems.append(f"{key}.{what}: {p.name} is not extracted for {spec.model} (add it to extract.hooks)")
        if spec.arch in ("topk", "batchtopk") and x is not None:
            from cortexlens.models.families import hook_width

            try:
                d_in = hook_width(x.hook, info.dims)
            except Exception:  # noqa: BLE001 - a model without known dims: checked when training
                d_in = None
            if spec.k is None:
                problems.append(f"{key}.k: {spec.arch} needs k")
            elif d_in is not None and spec.k > spec.expansion * d_in:
                problems.append(f"{key}.k: k={spec.k} is larger than the dictionary (d_sae = {spec.expansion} x "
                                f"{d_in} = {spec.expansion * d_in})")
    return problems


RUNS = {"sae_id": "VARCHAR", "model": "VARCHAR", "hook": "VARCHAR", "layer": "INTEGER", "arch": "VARCHAR",
        "d_in": "INTEGER", "d_sae": "INTEGER", "l0": "DOUBLE", "fvu": "DOUBLE", "dead_frac": "DOUBLE",
        "loss_recovered": "DOUBLE", "target_hook": "VARCHAR", "dataset": "VARCHAR", "explained_variance": "DOUBLE",
        "dense_frac": "DOUBLE", "kl": "DOUBLE", "final_cosine": "DOUBLE", "final_relative_change": "DOUBLE"}
FEATURES = {"sae_id": "VARCHAR", "dataset": "VARCHAR", "doc_id": "BIGINT", "pos": "INTEGER", "feature": "INTEGER",
            "value": "FLOAT"}
HEADS = {"sae_id": "VARCHAR", "feature": "INTEGER", "head": "INTEGER", "norm_frac": "DOUBLE"}
EDGES = {"source_sae": "VARCHAR", "source_feature": "INTEGER", "target_sae": "VARCHAR", "target_feature": "INTEGER",
         "kind": "VARCHAR", "prompt": "INTEGER", "score": "DOUBLE"}

PLUGIN = Plugin(
    sections={"train_sae": TrainSaeParams},
    views=[
        ResultView("sae_runs", table="sae_runs", stage="train_sae", columns=RUNS,
                   description="One row per trained SAE or transcoder: held-out FVU, L0, dead fraction, loss recovered"),
        ResultView("sae_features", table="sae_features", stage="train_sae", columns=FEATURES,
                   description="Every nonzero latent of every held-out token (sparse)"),
        ResultView("sae_heads", table="sae_heads", stage="train_sae", columns=HEADS,
                   description="attn_z SAEs: each latent's decoder norm per head, as a fraction of its total"),
        ResultView("sae_edges", table="sae_edges", stage="train_sae", columns=EDGES,
                   description="Transcoder circuits: connection (input-independent) and attribution edges"),
    ],
    checks=[check],
)
