"""The patching analysis's params section, its SQL view and its checks (see cortexlens.plugins)."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field, model_validator

from cortexlens.config.schema import Name, PositiveInt, Section, project_path
from cortexlens.models.hooks import UnknownHookError, parse_hook
from cortexlens.plugins import Plugin
from cortexlens.store.views import ResultView

if TYPE_CHECKING:
    from cortexlens.config.study import Study

SWEEP_HOOKS = ("resid_pre", "resid_mid", "mlp_in", "attn_out", "mlp_out", "resid_post")


class TaskSpec(Section):
    """Prompt pairs for one model: built in (induction, facts, ioi) or a file."""

    name: Name
    kind: Literal["induction", "facts", "ioi", "file"]
    model: Name
    """A model of `models:`, also in patch.models."""
    n_prompts: PositiveInt = 32
    length: PositiveInt = 10
    """induction: words in the repeated segment (prompts are <bos> + 2 * length - 1 tokens)."""
    path: str | None = None
    """file: JSONL or Parquet with fields clean, corrupted, answer, distractor (and optionally subject)."""
    seed: int = 0

    @model_validator(mode="after")
    def _path_for_files(self) -> TaskSpec:
        if (self.kind == "file") != (self.path is not None):
            raise ValueError("path is required for kind file, and only for it")
        return self


class Tracing(Section):
    """Causal tracing (Meng et al.): noise on the subject tokens, restore one state (or window) at a time."""

    samples: PositiveInt = 10
    noise: float = Field(3.0, gt=0)
    """Noise std in units of the std of the subject tokens' embeddings (3 in the paper)."""
    kinds: list[Literal["resid", "mlp", "attn"]] = Field(default_factory=lambda: ["resid", "mlp", "attn"])
    window: PositiveInt = 1
    """MLP and attention outputs of this many consecutive layers are restored together."""


class DirectionSpec(Section):
    """A direction to patch along at one site, and its illusion check."""

    name: Name
    task: Name
    hook: str
    """resid_pre/resid_mid/resid_post/attn_out/mlp_out, mlp_post, or attn_z (with head)."""
    layer: int
    head: int | None = None
    position: int = -1
    """Over real tokens; -1 the last."""
    source: Literal["probe", "file", "das"]
    concept: str | None = None
    """probe: the concept whose probe (on `hook` at `layer`, pooling `pooling`) gives the direction."""
    pooling: str = "mean"
    path: str | None = None
    """file: a safetensors file, or a SAELens folder (cfg.json + sae_weights.safetensors)."""
    key: str | None = None
    """file: the tensor's name (default W_dec in an SAE folder): [width] or [rows, width]."""
    row: int = Field(0, ge=0)
    """file: the row of a [rows, width] tensor (an SAE latent's decoder row)."""
    das_steps: PositiveInt = 200
    das_lr: float = Field(0.02, gt=0)
    train_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.5
    """das: share of the task's prompts the direction is learnt on; effects are reported on the rest."""

    @model_validator(mode="after")
    def _source_keys(self) -> DirectionSpec:
        need = {"probe": ["concept"], "file": ["path"], "das": []}[self.source]
        missing = [k for k in need if getattr(self, k) is None]
        if missing:
            raise ValueError(f"source {self.source} needs {', '.join(missing)}")
        return self


class PatchParams(Section):
    """Causal interventions per model: activation and attribution patching, causal tracing, subspace patching."""

    models: list[Name]
    """The stage runs once per model (dvc.yaml's matrix); `[]` runs none."""
    tasks: list[TaskSpec] = Field(default_factory=list)
    hooks: list[str] = Field(default_factory=lambda: ["resid_pre", "attn_out", "mlp_out"])
    """Hooks swept over layer x position (residual-width hooks)."""
    heads: bool = True
    """Also patch every head (attn_z) at the final position and at every position, and mean-ablate it."""
    modes: list[Literal["denoising", "noising"]] = Field(default_factory=lambda: ["denoising", "noising"])
    attribution: bool = True
    tracing: Tracing | None = Tracing()
    """For tasks with subject spans (facts, files with `subject`); null turns it off."""
    directions: list[DirectionSpec] = Field(default_factory=list)
    illusion_fraction: float = Field(0.5, gt=0, le=1)
    """Flag a subspace effect whose row-space part alone gives less than this fraction of it."""
    min_effect: float = Field(0.1, ge=0)
    """... and which is at least this large (normalised)."""
    batch_size: PositiveInt = 256
    """Patched runs per forward pass."""
    seed: int = 0


def probe_weights(study: Study, model: str, concept: str) -> Path:
    return study.store_dir / "probe" / model / "weights" / f"{concept}.safetensors"


def direction_file(study: Study, spec: DirectionSpec) -> tuple[Path, str]:
    """(safetensors file, tensor key) of a file direction; a SAELens folder means sae_weights.safetensors/W_dec."""
    path = project_path(study.root, spec.path or "")
    if path.is_dir():
        return path / "sae_weights.safetensors", spec.key or "W_dec"
    return path, spec.key or ""


def safetensors_shapes(path: Path) -> dict[str, list[int]]:
    """Tensor name -> shape from a safetensors header (8-byte length, then JSON): no numpy, no torch."""
    with path.open("rb") as fh:
        (size,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(size))
    return {k: v["shape"] for k, v in header.items() if k != "__metadata__"}


def check(study: Study) -> list[str]:
    section = getattr(study.params, "patch", None)
    if section is None:
        return []
    problems = [f"patch.models[{i}]: unknown model {m!r} (defined in models: {', '.join(study.params.models)})"
                for i, m in enumerate(section.models) if m not in study.params.models]
    problems += _hook_problems(section)
    tasks = {}
    for i, task in enumerate(section.tasks):
        key = f"patch.tasks[{i}]"
        if task.name in tasks:
            problems.append(f"{key}.name: task {task.name!r} is listed twice")
        tasks[task.name] = task
        if task.model not in section.models:
            problems.append(f"{key}.model: {task.model!r} is not in patch.models ({', '.join(section.models)})")
        if task.kind == "file" and not project_path(study.root, task.path or "").is_file():
            problems.append(f"{key}.path: file not found: {task.path}")
        if task.kind == "induction" and task.model in study.params.models:
            problems += _context_problems(study, task, key)
    for i, spec in enumerate(section.directions):
        problems += _direction_problems(study, spec, f"patch.directions[{i}]", tasks)
    return problems


def _hook_problems(section: PatchParams) -> list[str]:
    problems = []
    for i, text in enumerate(section.hooks):
        try:
            hook, layer = parse_hook(text)
        except UnknownHookError as err:
            problems.append(f"patch.hooks[{i}]: {err}")
            continue
        if hook not in SWEEP_HOOKS or layer is not None:
            problems.append(f"patch.hooks[{i}]: {text!r}: sweeps take residual-width aliases over every layer "
                            f"({', '.join(SWEEP_HOOKS)}); heads are patched through patch.heads")
    return problems


def _context_problems(study: Study, task: TaskSpec, key: str) -> list[str]:
    try:
        info = study.model_info(task.model)
    except Exception:  # noqa: BLE001 -- the model's own error is reported by the core checks
        return []
    context = getattr(info.config, "max_position_embeddings", None)
    need = 2 * task.length + 1
    if isinstance(context, int) and need > context:
        return [f"{key}.length: {task.length} needs {need} positions; {task.model} has {context}"]
    return []


def _direction_problems(study: Study, spec: DirectionSpec, key: str, tasks: dict[str, TaskSpec]) -> list[str]:
    task = tasks.get(spec.task)
    if task is None:
        return [f"{key}.task: unknown task {spec.task!r} (patch.tasks: {', '.join(tasks) or 'none'})"]
    try:
        hook, fixed = parse_hook(spec.hook)
    except UnknownHookError as err:
        return [f"{key}.hook: {err}"]
    if hook not in (*SWEEP_HOOKS, "mlp_post", "attn_z") or fixed is not None:
        return [f"{key}.hook: {spec.hook!r} is not a residual hook, mlp_post or attn_z alias"]
    if task.model not in study.params.models:
        return []
    try:
        info = study.model_info(task.model)
    except Exception:  # noqa: BLE001 -- reported by the core checks
        return []
    problems = []
    n = info.n_layers
    if not -n <= spec.layer < n:
        problems.append(f"{key}.layer: layer {spec.layer} out of range for {task.model} (layers 0-{n - 1})")
    if hook == "attn_z" and spec.head is None:
        problems.append(f"{key}.head: attn_z directions live in one head's space; give head (0-{info.dims.n_heads - 1})")
    if spec.head is not None:
        if hook != "attn_z":
            problems.append(f"{key}.head: only attn_z directions take a head")
        elif not 0 <= spec.head < info.dims.n_heads:
            problems.append(f"{key}.head: head {spec.head} out of range for {task.model} "
                            f"(heads 0-{info.dims.n_heads - 1})")
    width = info.dims.d_head if hook == "attn_z" else (info.dims.d_mlp if hook == "mlp_post" else info.dims.d_model)
    if spec.source == "file":
        problems += _file_problems(study, spec, key, width)
    return problems


def _file_problems(study: Study, spec: DirectionSpec, key: str, width: int) -> list[str]:
    path, tensor = direction_file(study, spec)
    if not path.is_file():
        return [f"{key}.path: file not found: {path}"]
    try:
        shapes = safetensors_shapes(path)
    except (OSError, ValueError, struct.error) as err:
        return [f"{key}.path: {path} is not a safetensors file ({err})"]
    if tensor not in shapes:
        return [f"{key}.key: no tensor {tensor!r} in {path.name} (has: {', '.join(sorted(shapes))})"]
    shape = shapes[tensor]
    if len(shape) not in (1, 2):
        return [f"{key}.key: {tensor} is {shape}; a direction is [width] or [rows, width]"]
    if shape[-1] != width:
        return [(f"{key}: direction {tensor} of {path.name} has width {shape[-1]}; {spec.hook} of the task's "
                 f"model has width {width}")]
    if len(shape) == 2 and spec.row >= shape[0]:
        return [f"{key}.row: row {spec.row} out of range for {tensor} {shape} (rows 0-{shape[0] - 1})"]
    return []


PATCHING_VIEW = ResultView(
    "patching", table="patching", stage="patch",
    columns={"model": "VARCHAR", "task": "VARCHAR", "method": "VARCHAR", "hook": "VARCHAR", "layer": "INTEGER",
             "pos": "INTEGER", "head": "INTEGER", "direction": "VARCHAR", "effect": "DOUBLE", "logit_diff": "DOUBLE",
             # beyond DESIGN.md's contract (columns may grow)
             "mode": "VARCHAR", "token": "VARCHAR", "clean_logit_diff": "DOUBLE", "corrupted_logit_diff": "DOUBLE",
             "n_prompts": "INTEGER", "kind": "VARCHAR", "window_layers": "INTEGER", "prob": "DOUBLE", "clean_prob": "DOUBLE",
             "corrupted_prob": "DOUBLE", "part": "VARCHAR", "illusion": "BOOLEAN", "null_norm": "DOUBLE",
             "split": "VARCHAR", "previous_token": "DOUBLE", "prefix_matching": "DOUBLE"},
    description="one row per (model, task, method, mode, site): normalised effect and raw logit difference",
)

PLUGIN = Plugin(sections={"patch": PatchParams}, views=[PATCHING_VIEW], checks=[check])
