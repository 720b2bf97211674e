"""The validated study: params plus the directory they are relative to, and `load_study`.

`load_study(path)` is the only way stages and the CLI read params. It raises ConfigError with one
line per problem (naming the key path) before anything is written.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from pathlib import Path

from pydantic import ValidationError

from cortexlens.config.messages import validation_lines
from cortexlens.config.schema import (
    Params,
    project_path,
)
from cortexlens.config.semantic import check_dataset_files, check_device, check_extract, hook_points_for
from cortexlens.config.yaml_io import read_yaml
from cortexlens.errors import ConfigError
from cortexlens.models.describe import ModelInfo, describe_model
from cortexlens.models.hooks import HookPoint
from cortexlens.models.loading import ResolvedSource, resolve_source


class Study:
    """Validated params plus the directory they are relative to."""

    def __init__(self, params: Params, file: Path) -> None:
        self.params = params
        self.file = file.resolve()
        self.root = self.file.parent
        self._infos: dict[str, ModelInfo] = {}

    def path(self, relative: str) -> Path:
        return project_path(self.root, relative)

    @property
    def store_dir(self) -> Path:
        return self.path(self.params.paths.store)

    @property
    def models_dir(self) -> Path:
        return self.path(self.params.paths.models)

    @property
    def reports_dir(self) -> Path:
        return self.path(self.params.paths.reports)

    def model_source(self, name: str) -> ResolvedSource:
        spec = self.params.models[name]
        return resolve_source(spec.source, spec.revision, self.root, self.models_dir)

    @cached_property
    def _toy_config(self):
        from cortexlens.toy.model import toy_config, toy_vocab_size

        return toy_config(self.params.train_toy, toy_vocab_size())

    def model_info(self, name: str) -> ModelInfo:
        if name not in self._infos:
            source = self.model_source(name)
            toy = self._toy_config if source.alias == "toy" else None
            self._infos[name] = describe_model(name, source, toy)
        return self._infos[name]

    def hook_points(self, model: str) -> list[HookPoint]:
        assert self.params.extract is not None
        points, problems = hook_points_for(self.params.extract, self.model_info(model))
        if problems:
            raise ConfigError(*problems)
        return points


def parse_params(data: dict) -> Params:
    try:
        return Params.model_validate(data)
    except ValidationError as err:
        raise ConfigError(*validation_lines(Params, err, data)) from None


def load_study(path: str | Path = "params.yaml", require: Sequence[str] = ()) -> Study:
    """Read and fully validate a params file. `require` names sections a stage cannot run without."""
    file = Path(path)
    data = read_yaml(file)
    study = Study(parse_params(data), file)
    problems = [f"{section}: section missing in {file.name}" for section in require
                if getattr(study.params, section, None) is None]
    problems += check_device(study.params) + check_dataset_files(study.params, study.root)
    if study.params.extract is not None:
        problems += check_extract(study.params.extract, study.params, study.model_info)
    problems += _check_local_sources(study)
    if problems:
        raise ConfigError(*dict.fromkeys(problems))
    return study


def _check_local_sources(study: Study) -> list[str]:
    """Local model directories must exist even if no stage uses them yet (a typo surfaces early)."""
    problems = []
    checked = set(study.params.extract.models) if study.params.extract else set()
    for name in study.params.models:
        if name in checked:  # check_extract loaded their configs already
            continue
        source = study.model_source(name)
        if source.kind == "local" and not Path(source.location).is_dir():
            problems.append(f"models.{name}.source: directory not found: {study.params.models[name].source}")
    return problems
