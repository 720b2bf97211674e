"""`cortexlens check` for the brain section: names, hook points, stimuli and the recordings' data.

Everything a run would stop on is found here, before anything is written: models and controls not
extracted, hook points or layers not extracted, a subject's stimuli not extracted for a model, a
recording whose stimulus ids are missing from its stimuli, a single repetition where a ceiling is asked
for, a NIfTI whose mask or atlas does not match its images, an SAE folder that cannot be used. Reads
headers and id columns only (no torch).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from cortexlens.brain.plan import brain_points, control_of, sae_entries
from cortexlens.brain.plugin import NiftiSubject, ParquetSubjects, PlantedSubject, SimulatedSubject
from cortexlens.errors import CortexLensError

if TYPE_CHECKING:
    from cortexlens.config.study import Study


def check_brain(study: Study) -> list[str]:
    section, extract = study.params.brain, study.params.extract
    if extract is None:
        return ["brain: needs the extract section (the pooled features of the stimuli)"]
    problems = [f"brain.models[{i}]: {m!r} is not in extract.models ({', '.join(extract.models)})"
                for i, m in enumerate(section.models) if m not in extract.models]
    problems += [f"brain.controls.{m}: {m!r} is not in brain.models" for m in section.controls
                 if m not in section.models]
    if section.pooling not in extract.pooling:
        problems.append(f"brain.pooling: {section.pooling!r} is not stored (extract.pooling: {', '.join(extract.pooling)})")
    if not section.subjects:
        problems.append("brain.subjects: no subject to score (add e.g. {kind: simulated, dataset: <stimuli>})")
    scored = [m for m in section.models if m in extract.models]
    for model in scored:
        problems += _model_problems(study, model)
    for i, subject in enumerate(section.subjects):
        problems += _subject_problems(study, i, subject, scored)
    problems += _sae_problems(study, scored)
    return problems


def _model_problems(study: Study, model: str) -> list[str]:
    points, problems = brain_points(study, model)
    control, problem = control_of(study, model)
    if problem:
        problems.append(problem)
    if control is not None:
        have = set(study.hook_points(control))
        missing = [p.name for p in points if p not in have]
        if missing:
            problems.append(f"brain.models: {model}'s control {control} lacks extracted {', '.join(missing)}")
    return problems


def _extracted_for(study: Study, dataset: str, models: list[str], key: str) -> list[str]:
    if dataset not in study.params.datasets:
        return [f"{key}.dataset: unknown dataset {dataset!r} (defined in datasets: {', '.join(study.params.datasets)})"]
    problems = []
    for model in models:
        if dataset not in study.params.extract.datasets_of(model):
            problems.append(f"{key}.dataset: {dataset!r} is not extracted for {model} (extract.datasets"
                            f"{', extract.model_datasets.' + model if model in study.params.extract.model_datasets else ''})")
    return problems


def _subject_problems(study: Study, i: int, subject, scored: list[str]) -> list[str]:
    key = f"brain.subjects[{i}]"
    models = scored + [c for c in (control_of(study, m)[0] for m in scored) if c is not None]
    problems = _extracted_for(study, subject.dataset, models, key)
    if not problems:
        problems += _group_problems(study, subject.dataset, key)
    if isinstance(subject, PlantedSubject):
        problems += _planted_problems(study, subject, key)
    if isinstance(subject, PlantedSubject | SimulatedSubject) and subject.repetitions < 2 \
            and study.params.brain.ceiling != "none":
        problems.append(f"{key}.repetitions: a noise ceiling (brain.ceiling: split_half) needs at least 2 "
                        f"repetitions, got {subject.repetitions} (or set brain.ceiling: none)")
    if problems or not isinstance(subject, ParquetSubjects | NiftiSubject):
        return problems
    try:
        _check_recording(study, subject, key)
    except CortexLensError as err:
        problems += err.lines
    return problems


def _planted_problems(study: Study, subject: PlantedSubject, key: str) -> list[str]:
    from cortexlens.models.hooks import HookPoint, UnknownHookError, parse_hook

    extract = study.params.extract
    if subject.model not in extract.models:
        return [f"{key}.model: {subject.model!r} is not in extract.models ({', '.join(extract.models)})"]
    problems = _extracted_for(study, subject.dataset, [subject.model], key)
    try:
        hook, _ = parse_hook(subject.hook)
    except UnknownHookError as err:
        return problems + [f"{key}.hook: {err}"]
    n = study.model_info(subject.model).n_layers
    if not -n <= subject.layer < n or HookPoint(hook, subject.layer % n) not in study.hook_points(subject.model):
        problems.append(f"{key}.layer: {subject.hook} layer {subject.layer} is not extracted for {subject.model}")
    if subject.pooling not in extract.pooling:
        problems.append(f"{key}.pooling: {subject.pooling!r} is not stored (extract.pooling: {', '.join(extract.pooling)})")
    return problems


def stimuli_of(study: Study, dataset: str) -> tuple[list[str], list[str]]:
    """(stimulus id, group) of every document of the stimuli dataset, in doc_id order."""
    from cortexlens.data.sources import open_dataset

    section = study.params.brain
    ids, groups = [], []
    for doc in open_dataset(dataset, study.params.datasets[dataset], study.root):
        stimulus = doc.labels.get(section.stimulus_field, str(doc.doc_id))
        ids.append(stimulus)
        groups.append(doc.labels.get(section.group_field, stimulus))
    return ids, groups


def _group_problems(study: Study, dataset: str, key: str) -> list[str]:
    _, groups = stimuli_of(study, dataset)
    if len(set(groups)) < 2:
        field = study.params.brain.group_field
        return [(f"{key}.dataset: the stimuli of {dataset!r} form {len(set(groups))} group (label {field!r}); "
                f"cross-validation over groups needs at least 2 (see brain.group_field)")]
    return []


def _check_recording(study: Study, subject, key: str) -> None:
    """The data checks of a recorded subject: files, stimulus ids, repetitions (and NIfTI geometry)."""
    from cortexlens.brain.inputs import load_recordings

    stimulus_ids, _ = stimuli_of(study, subject.dataset)
    load_recordings(study, subject, key, stimulus_ids)


def _sae_problems(study: Study, scored: list[str]) -> list[str]:
    from cortexlens.features.sae import cfg_model, cfg_point, read_cfg, sae_folder

    problems = []
    for i, sae_id, model in sae_entries(study):
        key = f"brain.saes[{i}]"
        folder = sae_folder(study.models_dir, sae_id)
        try:
            cfg = read_cfg(folder, key)
            point = cfg_point(cfg, key, folder)
        except CortexLensError as err:
            problems += err.lines
            continue
        model = model or cfg_model(cfg)
        if model is None:
            problems.append(f"{key}: {Path(folder) / 'cfg.json'} names no model_name; give {{id: {sae_id}, model: <model>}}")
        elif model not in scored:
            problems.append(f"{key}: its model {model!r} is not in brain.models ({', '.join(study.params.brain.models)})")
        elif point not in study.hook_points(model):
            problems.append(f"{key}: {point.name} (its hook_name) is not extracted for {model}")
    return problems
