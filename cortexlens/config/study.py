"""The validated study: params plus the directory they are relative to, and `load_study`.

`load_study(path)` is the only way stages and the CLI read params. It raises ConfigError with one
line per problem (naming the key path) before anything is written.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

from pydantic import ValidationError, create_model

from cortexlens.config.messages import validation_lines
from cortexlens.config.schema import (
    Params,
    project_path,
)
from cortexlens.config.semantic import check_dataset_files, check_device, check_extract, hook_points_for
from cortexlens.config.yaml_io import read_yaml
from cortexlens.errors import ConfigError, CortexLensError
from cortexlens.models.describe import ModelInfo, describe_model
from cortexlens.models.hooks import HookPoint, UnknownHookError, parse_hook
from cortexlens.models.model_config import ModelConfig
from cortexlens.models.sources import ResolvedSource, resolve_source


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
    def _trained_configs(self) -> dict[str, ModelConfig]:
        """The config.json of each model the pipeline trains, from its stage's params (alias -> config)."""
        from cortexlens.toy.config import toy_config_dict

        return {"toy": ModelConfig(toy_config_dict(self.params.train_toy)),
                "facts": ModelConfig(toy_config_dict(self.params.train_facts))}

    def model_info(self, name: str) -> ModelInfo:
        if name not in self._infos:
            source = self.model_source(name)
            self._infos[name] = describe_model(name, source, self._trained_configs.get(source.alias or ""))
        return self._infos[name]

    def hook_points(self, model: str) -> list[HookPoint]:
        assert self.params.extract is not None
        points, problems = hook_points_for(self.params.extract, self.model_info(model))
        if problems:
            raise ConfigError(*problems)
        return points

    def requested_points(self, model: str, section: str, hooks: Sequence[str], layers: str | Sequence[int]
                         ) -> tuple[list[HookPoint], list[str]]:
        """An analysis's `hooks` at `layers` ("all": every extracted layer of each hook; a hook text
        with its own layer, `resid_post.3`, keeps it) as extracted points of `model`, and one line per
        hook or layer that is not extracted, keyed `<section>.hooks[i]` or `<section>.layers[j]`."""
        extracted = self.hook_points(model)
        n = self.model_info(model).n_layers
        points: list[HookPoint] = []
        problems: list[str] = []
        for i, text in enumerate(hooks):
            try:
                hook, fixed = parse_hook(text)
            except UnknownHookError as err:
                problems.append(f"{section}.hooks[{i}]: {err}")
                continue
            have = sorted(p.layer for p in extracted if p.hook == hook)
            if not have:
                problems.append(f"{section}.hooks[{i}]: {hook!r} is not extracted for {model} (add it to extract.hooks)")
                continue
            if fixed is not None:
                wanted, keys = [fixed], [f"{section}.hooks[{i}]"]
            elif layers == "all":
                wanted, keys = have, [f"{section}.layers"] * len(have)
            else:
                wanted, keys = list(layers), [f"{section}.layers[{j}]" for j in range(len(layers))]
            for layer, key in zip(wanted, keys):
                if not -n <= layer < n or layer % n not in have:
                    problems.append(f"{key}: layer {layer} of {hook} is not extracted for {model} "
                                    f"(extracted: {', '.join(map(str, have))})")
                else:
                    points.append(HookPoint(hook, layer % n))
        return list(dict.fromkeys(points)), problems


@lru_cache(maxsize=1)
def params_model() -> type[Params]:
    """The schema of params.yaml: the core sections of `schema.Params` plus every analysis plugin's
    section (`cortexlens/<package>/plugin.py`), each optional. Built once per process."""
    from cortexlens.plugins import plugin_sections

    sections = plugin_sections()
    clash = sorted(set(sections) & set(Params.model_fields))
    if clash:
        raise TypeError(f"plugin sections {', '.join(clash)} clash with core sections of params.yaml")
    fields: dict[str, Any] = {name: (model | None, None) for name, model in sections.items()}
    return create_model("Params", __base__=Params, __doc__=Params.__doc__, **fields)


def parse_params(data: dict) -> Params:
    model = params_model()
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise ConfigError(*validation_lines(model, err, data)) from None


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
    if not problems:  # plugin checks may rely on the core sections being sound
        problems += _plugin_problems(study)
    if problems:
        raise ConfigError(*dict.fromkeys(problems))
    return study


def _plugin_problems(study: Study) -> list[str]:
    from cortexlens.plugins import plugin_checks

    problems: list[str] = []
    for check in plugin_checks():
        try:
            problems += check(study)
        except CortexLensError as err:  # a check that loads a model config may fail with its own line
            problems += err.lines
    return problems


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
