"""Checks that need more than types: names that must exist, hooks a model has, layers in range.

Each check returns problem lines (`<key path>: <what is wrong>`) rather than raising, so that one
run of `cortexlens check` reports every problem in the file.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from pathlib import Path

from cortexlens.config.schema import Extract, FileDataset, HookEntry, Params, project_path
from cortexlens.errors import CortexLensError
from cortexlens.models.describe import ModelInfo
from cortexlens.models.families import SUPPORTED_MODEL_TYPES
from cortexlens.models.hooks import HOOK_ALIASES, HookPoint, UnknownHookError, parse_hook

InfoFn = Callable[[str], ModelInfo]  # model name -> ModelInfo (raises CortexLensError when unresolvable)


def check_device(params: Params) -> list[str]:
    if params.device in ("auto", "cpu"):
        return []  # nothing to check, and no reason to import torch
    import torch

    if params.device.startswith("cuda") and not torch.cuda.is_available():
        return [f"device: {params.device!r} requested but CUDA is not available on this machine (use auto or cpu)"]
    if params.device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        return ["device: 'mps' requested but MPS is not available on this machine (use auto or cpu)"]
    return []


def check_dataset_files(params: Params, root: Path) -> list[str]:
    problems = []
    for name, spec in params.datasets.items():
        if isinstance(spec, FileDataset) and not project_path(root, spec.path).is_file():
            problems.append(f"datasets.{name}.path: file not found: {spec.path}")
    return problems


def _check_names(key: str, names: list[str], defined: dict, section: str, what: str) -> list[str]:
    problems, seen = [], set()
    for i, name in enumerate(names):
        if name in seen:
            problems.append(f"{key}[{i}]: {what} {name!r} is listed twice")
        elif name not in defined:
            known = ", ".join(defined) or "none"
            problems.append(f"{key}[{i}]: unknown {what} {name!r} (defined in {section}: {known})")
        seen.add(name)
    return problems


def check_extract(extract: Extract, params: Params, model_info: InfoFn) -> list[str]:
    problems = _check_names("extract.models", extract.models, params.models, "models", "model")
    problems += _check_names("extract.datasets", extract.datasets, params.datasets, "datasets", "dataset")
    for model, names in extract.model_datasets.items():
        if model not in extract.models:
            problems.append(f"extract.model_datasets.{model}: {model!r} is not in extract.models "
                            f"({', '.join(extract.models)})")
        if not names:
            problems.append(f"extract.model_datasets.{model}: lists no dataset")
        problems += _check_names(f"extract.model_datasets.{model}", names, params.datasets, "datasets", "dataset")
    for name in dict.fromkeys(m for m in extract.models if m in params.models):
        try:
            info = model_info(name)
        except CortexLensError as err:
            problems += err.lines
            continue
        problems += hook_points_for(extract, info)[1]
    return list(dict.fromkeys(problems))


def _unknown_hook_line(key: str, text: str, err: UnknownHookError) -> str:
    hint = difflib.get_close_matches(text.split(".")[-1], HOOK_ALIASES, n=1)
    suffix = f"; did you mean {hint[0]!r}?" if hint else ""
    return f"{key}: {err} (allowed: {', '.join(HOOK_ALIASES)}, blocks.<L>.<hook>, module:<path>){suffix}"


def _layers_in_range(layers: list[int], key: str, info: ModelInfo) -> tuple[list[int], list[str]]:
    n = info.n_layers
    out, problems = [], []
    for j, layer in enumerate(layers):
        if -n <= layer < n:
            out.append(layer % n)
        else:
            problems.append(f"{key}[{j}]: layer {layer} out of range for {info.name} (layers 0-{n - 1})")
    return out, problems


def hook_points_for(extract: Extract, info: ModelInfo) -> tuple[list[HookPoint], list[str]]:
    """The hook points `extract` asks of one model, and the problems found on the way."""
    points: list[HookPoint] = []
    problems: list[str] = []
    for i, entry in enumerate(extract.hooks):
        is_mapping = isinstance(entry, HookEntry)
        text = entry.hook if is_mapping else entry
        key = f"extract.hooks[{i}]" + (".hook" if is_mapping else "")
        try:
            hook, fixed_layer = parse_hook(text)
        except UnknownHookError as err:
            problems.append(_unknown_hook_line(key, text, err))
            continue
        point_problems, hook_points = _points_for_entry(hook, fixed_layer, entry, i, key, extract, info)
        problems += point_problems
        points += [p for p in hook_points if p not in points]
    return points, problems


def _points_for_entry(hook: str, fixed_layer: int | None, entry: str | HookEntry, i: int, key: str,
                      extract: Extract, info: ModelInfo) -> tuple[list[str], list[HookPoint]]:
    point = HookPoint(hook, fixed_layer if fixed_layer is not None else -1)
    if point.is_module:
        if point.module_path not in info.module_names:
            return [f"{key}: {info.name} has no module {point.module_path!r}"], []
        return [], [point]
    if info.family is None:
        return [(f"{key}: {info.name} is a {info.config.model_type!r} model, which has no canonical hooks "
                f"(supported: {', '.join(SUPPORTED_MODEL_TYPES)}); use module:<path>")], []
    if hook not in info.hooks:
        why = " (parallel attention and MLP)" if hook == "resid_mid" else ""
        return [f"{key}: {info.name} has no hook {hook!r}{why} (it has: {', '.join(info.hooks)})"], []
    if fixed_layer is not None:
        layers, problems = _layers_in_range([fixed_layer], key, info)
        problems = [p.replace(f"{key}[0]:", f"{key}:") for p in problems]
    else:
        entry_layers = entry.layers if isinstance(entry, HookEntry) else None
        spec = entry_layers if entry_layers is not None else extract.layers
        layers_key = f"extract.hooks[{i}].layers" if entry_layers is not None else "extract.layers"
        if spec == "all":
            layers, problems = list(range(info.n_layers)), []
        else:
            layers, problems = _layers_in_range(list(spec), layers_key, info)
    return problems, [HookPoint(hook, layer) for layer in dict.fromkeys(layers)]
