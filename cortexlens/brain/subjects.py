"""The subjects of a brain run, ready to encode: recording, stimuli rows, groups and noise ceiling.

Stimuli come from the store's documents of the subject's dataset (their `stimulus_id` and `group`
labels, see `brain.stimulus_field` / `group_field`), so features and responses are matched by stimulus
id, never by position. Simulated subjects are generated here from those documents; planted ones from
the stored pooled features of their model and layer; recorded ones are read and validated
(`cortexlens.brain.inputs`) before anything is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from cortexlens.brain.ceiling import Ceiling, split_half_ceiling
from cortexlens.brain.inputs import load_recordings
from cortexlens.brain.plugin import PlantedSubject, SimulatedSubject
from cortexlens.brain.recordings import Recording
from cortexlens.brain.simulate import (
    RoiSpec,
    implied_r,
    planted_subject,
    simulated_subject,
    stimulus_properties,
)
from cortexlens.errors import ConfigError
from cortexlens.store.documents import read_documents
from cortexlens.store.reader import read_pooled

if TYPE_CHECKING:
    from cortexlens.config.study import Study


@dataclass(frozen=True)
class PreparedSubject:
    recording: Recording
    dataset: str
    kind: str
    doc_ids: np.ndarray  # [n_stimuli] the document of each of the recording's stimuli
    groups: np.ndarray  # [n_stimuli]
    ceiling: Ceiling | None
    implied_r: np.ndarray | None  # [N] what a perfect model would reach (simulated and planted subjects)


@dataclass(frozen=True)
class Stimuli:
    doc_ids: np.ndarray  # [n] in doc_id order
    stimulus_ids: list[str]
    groups: list[str]
    texts: list[str]
    labels: list[dict[str, str]]

    def rows_of(self, stimulus_ids: np.ndarray) -> np.ndarray:
        index = {s: i for i, s in enumerate(self.stimulus_ids)}
        return np.array([index[s] for s in stimulus_ids.tolist()], dtype=np.int64)


def read_stimuli(study: Study, model: str, dataset: str) -> Stimuli:
    section = study.params.brain
    docs = read_documents(study.store_dir, model, dataset)
    ids = [d.labels.get(section.stimulus_field, str(d.doc_id)) for d in docs]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"brain.stimulus_field: label {section.stimulus_field!r} of dataset {dataset!r} "
                          f"repeats stimulus ids")
    return Stimuli(np.array([d.doc_id for d in docs], dtype=np.int64), ids,
                   [d.labels.get(section.group_field, s) for d, s in zip(docs, ids)], [d.text for d in docs],
                   [d.labels for d in docs])


def prepare_subjects(study: Study, model: str) -> list[PreparedSubject]:
    """Every subject of brain.subjects, validated, with ceilings (the stimuli read from `model`'s extractions)."""
    section = study.params.brain
    out: list[PreparedSubject] = []
    stimuli_cache: dict[str, Stimuli] = {}
    for i, entry in enumerate(section.subjects):
        key = f"brain.subjects[{i}]"
        if entry.dataset not in stimuli_cache:
            stimuli_cache[entry.dataset] = read_stimuli(study, model, entry.dataset)
        stimuli = stimuli_cache[entry.dataset]
        for recording, implied in _recordings(study, entry, key, stimuli):
            if any(s.recording.subject == recording.subject for s in out):
                raise ConfigError(f"{key}: subject name {recording.subject!r} is used twice")
            rows = stimuli.rows_of(recording.stimulus_ids)
            ceiling = None
            if section.ceiling != "none":  # repetitions were checked (checks.py, inputs.py)
                ceiling = split_half_ceiling(recording.values, section.ceiling_splits, section.seed)
            out.append(PreparedSubject(recording, entry.dataset, entry.kind, stimuli.doc_ids[rows],
                                       np.asarray(stimuli.groups, dtype=object)[rows], ceiling, implied))
    return out


def _recordings(study: Study, entry, key: str, stimuli: Stimuli) -> list[tuple[Recording, np.ndarray | None]]:
    groups = np.asarray(stimuli.groups, dtype=object)
    if isinstance(entry, SimulatedSubject):
        properties = stimulus_properties(stimuli.texts, stimuli.labels, entry.seed)
        rois = {name: RoiSpec(dict(r.drivers), r.noise, r.n_neuroids) for name, r in entry.rois.items()}
        recording, sd = simulated_subject(entry.name, stimuli.stimulus_ids, properties, groups, rois,
                                          entry.repetitions, entry.passage_effect, entry.seed)
        # the passage component is signal too (it repeats), so a perfect model reaches this:
        return [(recording, implied_r(sd, entry.repetitions))]
    if isinstance(entry, PlantedSubject):
        layer = entry.layer % study.model_info(entry.model).n_layers  # -1: the last layer
        pooled = read_pooled(study.store_dir, entry.model, entry.dataset, entry.hook, layer, entry.pooling)
        if not np.array_equal(pooled.doc_ids, stimuli.doc_ids):
            raise ConfigError(f"{key}: the stored documents of {entry.dataset!r} differ between models")
        recording = planted_subject(entry.name, stimuli.stimulus_ids, pooled.X, entry.n_neuroids, entry.noise,
                                    entry.repetitions, entry.seed)
        return [(recording, np.full(entry.n_neuroids, implied_r(entry.noise, entry.repetitions)))]
    return [(r, None) for r in load_recordings(study, entry, key, stimuli.stimulus_ids, data=True)]
