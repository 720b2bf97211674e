"""Build a params task's prompt pairs for its model, and load a params direction (checked, before writing)."""

from __future__ import annotations

from pathlib import Path

import torch

from cortexlens.data.corpus import corpus_vocabulary
from cortexlens.errors import ConfigError
from cortexlens.models.hooked import HookedModel
from cortexlens.models.hooks import HookPoint, parse_hook
from cortexlens.patching.plugin import DirectionSpec, TaskSpec, direction_file, probe_weights
from cortexlens.patching.prompts import IOI_NAMES, fact_pairs, file_pairs, induction_pairs, ioi_pairs
from cortexlens.patching.subspace import Where, width_of
from cortexlens.patching.tasks import TaskBatch, encode_task, single_token


def build_task(study, model: HookedModel, spec: TaskSpec, key: str) -> TaskBatch:
    if spec.kind == "induction":
        words = [w for w in corpus_vocabulary() if w.isalpha() and single_token(model, w) is not None]
        if len(words) < spec.length + 1:
            raise ConfigError(f"{key}: only {len(words)} corpus words are single tokens for {model.name}")
        pairs = induction_pairs(spec.n_prompts, spec.length, words, spec.seed)
    elif spec.kind == "facts":
        from cortexlens.toy.facts import FactTable

        directory = Path(study.model_source(spec.model).location)
        try:
            table = FactTable.load(directory)
        except FileNotFoundError:
            raise ConfigError(f"{key}: facts tasks need a model train_facts trained; {spec.model} has no "
                              f"facts.json in {directory}") from None
        pairs = fact_pairs(list(table.trained), spec.n_prompts, spec.seed)
    elif spec.kind == "ioi":
        names = [n for n in IOI_NAMES if single_token(model, n) is not None]
        if len(names) < 5:
            raise ConfigError(f"{key}: ioi needs 5 names that are single tokens for {model.name}; found {len(names)}")
        pairs = ioi_pairs(spec.n_prompts, spec.seed, names)
    else:
        pairs = file_pairs(study.path(spec.path), f"{key}.path", spec.n_prompts)
    return encode_task(model, spec.name, pairs, key)


def where_of(model: HookedModel, spec: DirectionSpec) -> Where:
    hook, _ = parse_hook(spec.hook)
    return Where(HookPoint(hook, spec.layer % model.dims.n_layers), spec.position, spec.head)


def load_direction(study, model: HookedModel, spec: DirectionSpec, key: str) -> torch.Tensor | None:
    """The unit direction of a probe or file spec ([width]); None for DAS (learnt later)."""
    where = where_of(model, spec)
    if spec.source == "das":
        return None
    from safetensors.numpy import load_file

    if spec.source == "probe":
        path = probe_weights(study, model.name, spec.concept)
        tensor = f"{where.point.name}/{spec.pooling}/direction"
        if not path.is_file():
            raise ConfigError(f"{key}.concept: no probe weights for {spec.concept!r} of {model.name} ({path}); "
                              f"run probe@{model.name} with that concept first")
    else:
        path, tensor = direction_file(study, spec)
        if not path.is_file():
            raise ConfigError(f"{key}.path: file not found: {path}")
    tensors = load_file(str(path))
    if tensor not in tensors:
        raise ConfigError(f"{key}: no tensor {tensor!r} in {path} (has: {', '.join(sorted(tensors)[:8])})")
    value = torch.from_numpy(tensors[tensor].astype("float32"))
    if value.ndim == 2:
        if spec.row >= value.shape[0]:
            raise ConfigError(f"{key}.row: row {spec.row} out of range for {tensor} {tuple(value.shape)}")
        value = value[spec.row]
    width = width_of(model, where)
    if value.ndim != 1 or value.shape[0] != width:
        raise ConfigError(f"{key}: direction {tensor} of {path.name} has width {value.shape[-1]}; "
                          f"{where.point.name} of {model.name} has width {width}")
    if float(value.norm()) == 0:
        raise ConfigError(f"{key}: direction {tensor} of {path.name} is zero")
    return (value / value.norm()).to(model.device)
