"""Recorded subjects of params.yaml (Parquet long tables, NIfTI) read and validated against their stimuli.

`load_recordings(..., data=False)` is what `cortexlens check` runs: the id columns of a Parquet table, the
headers and events of a NIfTI subject; the stage runs it with `data=True` before writing anything. Every
problem is one line naming the params key and the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow.parquet as pq

from cortexlens.brain.nifti import NiftiInputs, check_shapes, read_events, read_nifti
from cortexlens.brain.plugin import NiftiSubject, ParquetSubjects
from cortexlens.brain.recordings import REQUIRED, Recording, check_repetitions, check_stimuli, read_long_table
from cortexlens.errors import DatasetError

if TYPE_CHECKING:
    from cortexlens.config.study import Study


def _file(study: Study, relative: str, key: str) -> Path:
    path = study.path(relative)
    if not path.is_file():
        raise DatasetError(f"{key}: file not found: {relative}")
    return path


def load_recordings(study: Study, subject: ParquetSubjects | NiftiSubject, key: str, stimulus_ids: list[str],
                    data: bool = False) -> list[Recording]:
    """The subject entry's recordings (with data=False: id-only stand-ins, for the checks)."""
    want_ceiling = study.params.brain.ceiling != "none"
    if isinstance(subject, ParquetSubjects):
        path = _file(study, subject.path, f"{key}.path")
        recordings = (read_long_table(path, f"{key}.path", subject.path, subject.subjects) if data
                      else _id_only(path, f"{key}.path", subject.path, subject.subjects))
        shown, field = subject.path, "path"
    else:
        inputs = nifti_inputs(study, subject, key)
        recordings = [read_nifti(inputs)] if data else [_nifti_ids(inputs)]
        shown, field = subject.events, "events"
    for recording in recordings:
        check_stimuli(recording, stimulus_ids, f"{key}.{field}", shown, subject.dataset)
        if want_ceiling:
            check_repetitions(recording, f"{key}.{field}", shown)
    return recordings


def nifti_inputs(study: Study, subject: NiftiSubject, key: str) -> NiftiInputs:
    files = {f: getattr(subject, f) for f in ("images", "events", "mask", "atlas", "atlas_labels")
             if getattr(subject, f) is not None}
    paths = {f: _file(study, rel, f"{key}.{f}") for f, rel in files.items()}
    return NiftiInputs(key, subject.name, paths["images"], paths["events"], paths.get("mask"), paths.get("atlas"),
                       paths.get("atlas_labels"), subject.roi, files)


def _id_only(path: Path, key: str, shown: str, subjects: list[str] | None) -> list[Recording]:
    """Recordings with the stimulus ids and repetition counts of the file, and no values."""
    try:
        schema = pq.read_schema(path)
    except Exception as err:  # noqa: BLE001 -- pyarrow raises several types for a file that is not Parquet
        raise DatasetError(f"{key}: {shown} is not a readable Parquet file: {err}") from None
    missing = [c for c in REQUIRED if c not in schema.names]
    if missing:
        raise DatasetError(f"{key}: {shown} lacks column(s) {', '.join(missing)} (columns: {', '.join(schema.names)})")
    table = pq.read_table(path, columns=["stimulus_id", "subject", "repetition"])
    subject = table.column("subject").to_numpy(zero_copy_only=False).astype(str)
    found = list(dict.fromkeys(subject.tolist()))
    absent = [s for s in (subjects or []) if s not in found]
    if absent:
        raise DatasetError(f"{key}: subject(s) {', '.join(absent)} not in {shown} (subjects: {', '.join(found)})")
    stim = table.column("stimulus_id").to_numpy(zero_copy_only=False).astype(str)
    reps = table.column("repetition").to_numpy(zero_copy_only=False)
    out = []
    for name in subjects or found:
        rows = subject == name
        out.append(_stand_in(name, stim[rows], reps[rows]))
    return out


def _nifti_ids(inputs: NiftiInputs) -> Recording:
    n_volumes, _ = check_shapes(inputs)
    _, stimulus, repetition = read_events(inputs, n_volumes)
    return _stand_in(inputs.subject, stimulus.astype(str), repetition)


def _stand_in(subject: str, stimulus: np.ndarray, repetition: np.ndarray) -> Recording:
    ids = np.unique(stimulus)
    n_reps = len(np.unique(repetition))
    return Recording(subject, ids, np.zeros((len(ids), n_reps, 0), np.float32), np.empty(0, object), np.empty(0, object))
