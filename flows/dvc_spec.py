"""Read dvc.yaml so the Prefect flow invalidates its cache on exactly what makes `dvc repro` re-run.

dvc.yaml is the one declaration of each stage's code and data dependencies, params keys and outputs.
The flow reuses it instead of repeating those lists: a stage's cache key is a hash of its deps' content
and its params values, and a stage whose outs are missing is re-run, as DVC would.

Supported dvc.yaml features are the ones this project uses: `${paths.*}`-style interpolation from the
params file, `matrix:` stages (`${item.<key>}`), deps/params/outs/metrics/plots entries given as
strings or single-key mappings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from cortexlens.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[1]
DVC_YAML = REPO_ROOT / "dvc.yaml"
_VAR = re.compile(r"\$\{\s*([A-Za-z0-9_.\-]+)\s*\}")


@dataclass(frozen=True)
class StageSpec:
    """One stage instance (`extract@minilm`), its paths resolved to absolute paths."""

    name: str  # "extract"
    item: str | None  # "minilm" for matrix stages
    deps: tuple[Path, ...]
    params: tuple[str, ...]  # dotted keys into params.yaml
    outs: tuple[Path, ...]  # outs, metrics and plots: everything the stage writes

    @property
    def full_name(self) -> str:
        return f"{self.name}@{self.item}" if self.item else self.name


def lookup(data: dict[str, Any], dotted: str) -> Any:
    """params['a']['b'] for 'a.b'; KeyError naming the key when absent."""
    value: Any = data
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            raise KeyError(dotted)
        value = value[part]
    return value


def _interpolate(text: str, variables: dict[str, Any]) -> str:
    def substitute(match: re.Match[str]) -> str:
        try:
            return str(lookup(variables, match.group(1)))
        except KeyError:
            raise ConfigError(f"dvc.yaml: unknown variable ${{{match.group(1)}}} in {text!r}") from None

    return _VAR.sub(substitute, text)


def _entry_paths(entries: list[Any] | None) -> list[str]:
    """`- path` or `- path: {cache: false}` -> path."""
    paths = []
    for entry in entries or []:
        paths.append(next(iter(entry)) if isinstance(entry, dict) else entry)
    return paths


def _resolve(raw: str, variables: dict[str, Any], study_root: Path) -> Path:
    # Paths built from params (`${paths.store}/...`, `${report.queries}`) are relative to the params
    # file, like every path in params.yaml; literal (code) paths to the repository holding dvc.yaml.
    base = study_root if raw.lstrip().startswith("${") else REPO_ROOT
    path = Path(_interpolate(raw, variables))
    return path if path.is_absolute() else (base / path)


def load_stage_specs(params: dict[str, Any], study_root: Path, dvc_yaml: Path = DVC_YAML) -> dict[str, StageSpec]:
    """Every stage instance of dvc.yaml, keyed by full name (`train_toy`, `extract@minilm`, `report`).

    `params` is the validated params as plain data (`Params.model_dump(mode="json")`).
    """
    try:
        stages = yaml.safe_load(dvc_yaml.read_text())["stages"]
    except (OSError, KeyError, TypeError, yaml.YAMLError) as err:
        raise ConfigError(f"{dvc_yaml}: cannot read its stages ({err})") from None
    specs: dict[str, StageSpec] = {}
    for name, body in stages.items():
        matrix = body.get("matrix")
        items: list[dict[str, Any] | None] = [None]
        if matrix:
            if len(matrix) != 1:
                raise ConfigError(f"dvc.yaml: stages.{name}.matrix: only one matrix key is supported")
            (key, values), = matrix.items()
            values = lookup(params, _VAR.fullmatch(values).group(1)) if isinstance(values, str) else values
            items = [{key: value} for value in values]
        for item in items:
            variables = {**params, "item": item or {}}
            outs = [*_entry_paths(body.get("outs")), *_entry_paths(body.get("metrics")),
                    *_entry_paths(body.get("plots"))]
            spec = StageSpec(
                name=name,
                item=str(next(iter(item.values()))) if item else None,
                deps=tuple(_resolve(d, variables, study_root) for d in _entry_paths(body.get("deps"))),
                params=tuple(_interpolate(p, variables) for p in _entry_paths(body.get("params"))),
                outs=tuple(_resolve(o, variables, study_root) for o in outs),
            )
            specs[spec.full_name] = spec
    return specs
