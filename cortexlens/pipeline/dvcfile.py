"""Read dvc.yaml into one StageSpec per stage instance, as DVC expands and names them.

dvc.yaml is the one declaration of each stage's code and data dependencies, params keys and outputs.
The stage template (for MLflow params and metrics paths) and the Prefect flow (for task order and
cache keys) read it here instead of repeating those lists.

Supported: `${a.b}` interpolation from the params file (and `${item.<key>}` in matrix stages);
`matrix:` with one or several keys, whose values are a list or a `${...}` reference to a list in
params; deps/params/outs/metrics/plots entries given as strings or single-key mappings. Matrix
instances are named as DVC names them: `stage@<v1>-<v2>`, with the key and index (`key0`) standing
in for a value that is a list or mapping.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cortexlens.errors import ConfigError

_VAR = re.compile(r"\$\{\s*([A-Za-z0-9_.\-]+)\s*\}")


@dataclass(frozen=True)
class StageSpec:
    """One stage instance (`extract@minilm`), its paths resolved to absolute paths."""

    name: str  # "extract"
    item: str | None  # "minilm" for matrix stages (DVC's suffix after '@')
    deps: tuple[Path, ...]
    params: tuple[str, ...]  # dotted keys into params.yaml
    outs: tuple[Path, ...]  # `outs:` entries
    metrics: tuple[Path, ...] = ()  # `metrics:` entries
    plots: tuple[Path, ...] = ()  # `plots:` entries (stage-level)
    item_values: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)  # {"model": "minilm"}

    @property
    def full_name(self) -> str:
        return f"{self.name}@{self.item}" if self.item else self.name

    @property
    def written(self) -> tuple[Path, ...]:
        """Everything the stage writes: outs, metrics and plots."""
        return (*self.outs, *self.metrics, *self.plots)


def lookup(data: dict[str, Any], dotted: str) -> Any:
    """params['a']['b'] for 'a.b'; KeyError naming the key when absent."""
    value: Any = data
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            raise KeyError(dotted)
        value = value[part]
    return value


def _interpolate(text: str, variables: dict[str, Any], where: str) -> str:
    def substitute(match: re.Match[str]) -> str:
        try:
            return str(lookup(variables, match.group(1)))
        except KeyError:
            raise ConfigError(f"dvc.yaml: {where}: unknown variable ${{{match.group(1)}}} in {text!r}") from None

    return _VAR.sub(substitute, text)


def _entry_paths(entries: list[Any] | None) -> list[str]:
    """`- path` or `- path: {cache: false}` -> path."""
    return [next(iter(entry)) if isinstance(entry, dict) else entry for entry in entries or []]


def _resolve(raw: str, variables: dict[str, Any], study_root: Path, code_root: Path, where: str) -> Path:
    # Paths built from params (`${paths.store}/...`, `${report.queries}`) are relative to the params
    # file, like every path in params.yaml; literal (code) paths to the repository holding dvc.yaml.
    base = study_root if raw.lstrip().startswith("${") else code_root
    path = Path(_interpolate(raw, variables, where))
    return path if path.is_absolute() else base / path


def _paths(entries: list[Any] | None, variables: dict[str, Any], study_root: Path, code_root: Path,
           where: str) -> tuple[Path, ...]:
    return tuple(_resolve(p, variables, study_root, code_root, where) for p in _entry_paths(entries))


def _matrix_items(name: str, matrix: dict[str, Any], params: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(suffix, {key: value}) for every combination, in DVC's order (the product of keys in order)."""
    axes: list[list[tuple[str, Any]]] = []
    for key, values in matrix.items():
        if isinstance(values, str):
            ref = _VAR.fullmatch(values.strip())
            if ref is None:
                raise ConfigError(f"dvc.yaml: stages.{name}.matrix.{key}: expected a list or ${{...}}, got {values!r}")
            try:
                values = lookup(params, ref.group(1))
            except KeyError:
                raise ConfigError(f"dvc.yaml: stages.{name}.matrix.{key}: unknown variable {values}") from None
        if not isinstance(values, list):
            raise ConfigError(f"dvc.yaml: stages.{name}.matrix.{key}: expected a list, got {values!r}")
        axes.append([(_suffix_part(key, i, v), v) for i, v in enumerate(values)])
    items = []
    for combination in itertools.product(*axes):
        suffix = "-".join(part for part, _ in combination)
        items.append((suffix, {key: value for key, (_, value) in zip(matrix, combination, strict=True)}))
    return items


def _suffix_part(key: str, index: int, value: Any) -> str:
    if isinstance(value, (list, dict)):
        return f"{key}{index}"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def read_dvc_yaml(path: Path) -> dict[str, Any]:
    try:
        stages = yaml.safe_load(path.read_text(encoding="utf-8"))["stages"]
    except (OSError, KeyError, TypeError, yaml.YAMLError) as err:
        raise ConfigError(f"{path}: cannot read its stages ({err})") from None
    if not isinstance(stages, dict):
        raise ConfigError(f"{path}: `stages` must be a mapping")
    return stages


def load_stage_specs(params: dict[str, Any], study_root: Path, dvc_yaml: Path,
                     only: str | None = None) -> dict[str, StageSpec]:
    """Every stage instance of dvc.yaml (or of stage `only`), keyed by full name (`train_toy`,
    `extract@minilm`, `report`).

    `params` is the validated params as plain data (`Params.model_dump(mode="json")`); code paths are
    relative to the directory of `dvc_yaml`, params-built paths to `study_root`.
    """
    code_root = dvc_yaml.resolve().parent
    specs: dict[str, StageSpec] = {}
    for name, body in read_dvc_yaml(dvc_yaml).items():
        if only is not None and name != only:
            continue
        matrix = body.get("matrix")
        items = _matrix_items(name, matrix, params) if matrix else [(None, {})]
        for suffix, values in items:
            variables = {**params, "item": values}
            where = f"stages.{name}"

            def paths(key: str) -> tuple[Path, ...]:
                return _paths(body.get(key), variables, study_root, code_root, where)  # noqa: B023 (used at once)

            spec = StageSpec(
                name=name, item=suffix, deps=paths("deps"),
                params=tuple(_interpolate(p, variables, where) for p in _entry_paths(body.get("params"))),
                outs=paths("outs"), metrics=paths("metrics"), plots=paths("plots"),
                item_values=values,
            )
            specs[spec.full_name] = spec
    return specs


def params_values(spec: StageSpec, params: dict[str, Any]) -> dict[str, Any]:
    """The values of the params keys dvc.yaml lists for the stage, flat by dotted key (absent: None)."""
    values = {}
    for key in spec.params:
        try:
            values[key] = lookup(params, key)
        except KeyError:
            values[key] = None
    return values


def nested(values: dict[str, Any]) -> dict[str, Any]:
    """{"models.minilm": {...}, "device": "auto"} -> {"models": {"minilm": {...}}, "device": "auto"}."""
    out: dict[str, Any] = {}
    for dotted, value in values.items():
        node = out
        *parents, last = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return out
