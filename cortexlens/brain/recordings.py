"""Recordings: responses of one subject's neuroids to repeated presentations of stimuli.

A `Recording` holds values [n_stimuli, n_repetitions, n_neuroids] (NaN where a stimulus was not presented
that many times), the stimulus ids (matching the `stimulus_id` label of the stimuli dataset), and each
neuroid's id and region of interest. They come from a Parquet long table (one row per stimulus,
subject, neuroid and repetition; `roi` optional), from NIfTI volumes (`cortexlens.brain.nifti`), or from
the simulated subjects (`cortexlens.brain.simulate`); `to_long_table` writes the long format back.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from cortexlens.errors import DatasetError

REQUIRED = ("stimulus_id", "subject", "neuroid", "repetition", "value")
DEFAULT_ROI = "all"


@dataclass(frozen=True)
class Recording:
    subject: str
    stimulus_ids: np.ndarray  # [n_stimuli] str
    values: np.ndarray  # [n_stimuli, n_repetitions, n_neuroids] float32, NaN: not presented
    neuroids: np.ndarray  # [n_neuroids] str
    rois: np.ndarray  # [n_neuroids] str

    @property
    def mean(self) -> np.ndarray:
        """[n_stimuli, n_neuroids] the mean over the presentations each stimulus had."""
        count = np.sum(~np.isnan(self.values), axis=1)
        return (np.nansum(self.values, axis=1) / np.maximum(count, 1)).astype(np.float64)

    @property
    def repetitions(self) -> np.ndarray:
        """[n_stimuli] presentations of each stimulus (of its most presented neuroid)."""
        return np.sum(~np.isnan(self.values), axis=1).max(axis=1)

    def to_long_table(self) -> pa.Table:
        n_stimuli, n_reps, n_neuroids = self.values.shape
        s, k, j = np.meshgrid(np.arange(n_stimuli), np.arange(n_reps), np.arange(n_neuroids), indexing="ij")
        keep = ~np.isnan(self.values)
        return pa.table({"stimulus_id": self.stimulus_ids[s[keep]], "subject": np.full(keep.sum(), self.subject),
                         "neuroid": self.neuroids[j[keep]], "repetition": k[keep].astype(np.int32),
                         "value": self.values[keep].astype(np.float32), "roi": self.rois[j[keep]]})


def read_long_table(path: Path, key: str, shown: str, subjects: list[str] | None = None) -> list[Recording]:
    """The recordings of every subject in a Parquet long table (or of `subjects` only). `key` and `shown`
    (the path as params.yaml writes it) name the entry in errors."""
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowInvalid) as err:
        raise DatasetError(f"{key}: {shown} is not a readable Parquet file: {err}") from None
    missing = [c for c in REQUIRED if c not in table.column_names]
    if missing:
        raise DatasetError(f"{key}: {shown} lacks column(s) {', '.join(missing)} "
                           f"(columns: {', '.join(table.column_names)})")
    columns = {c: table.column(c).to_numpy(zero_copy_only=False) for c in table.column_names
               if c in (*REQUIRED, "roi")}
    subject = columns["subject"].astype(str)
    found = list(dict.fromkeys(subject.tolist()))
    wanted = subjects if subjects is not None else found
    absent = [s for s in wanted if s not in found]
    if absent:
        raise DatasetError(f"{key}: subject(s) {', '.join(absent)} not in {shown} (subjects: {', '.join(found)})")
    return [_pivot({c: v[subject == name] for c, v in columns.items()}, name, key, shown) for name in wanted]


def _pivot(columns: dict[str, np.ndarray], subject: str, key: str, shown: str) -> Recording:
    stim = columns["stimulus_id"].astype(str)
    neuroid = columns["neuroid"].astype(str)
    values = columns["value"].astype(np.float64)
    if not np.all(np.isfinite(values)):
        raise DatasetError(f"{key}: {shown}: subject {subject} has non-finite values")
    stim_ids, s = np.unique(stim, return_inverse=True)
    neuroids, j = np.unique(neuroid, return_inverse=True)
    reps, k = np.unique(columns["repetition"], return_inverse=True)
    flat = (s * len(reps) + k) * len(neuroids) + j
    if len(np.unique(flat)) != len(flat):
        raise DatasetError(f"{key}: {shown}: subject {subject} has several rows for one "
                           f"(stimulus_id, neuroid, repetition)")
    cube = np.full((len(stim_ids), len(reps), len(neuroids)), np.nan, dtype=np.float32)
    cube[s, k, j] = values
    return Recording(subject, stim_ids, cube, neuroids, _rois(columns.get("roi"), j, len(neuroids), subject, key, shown))


def _rois(roi: np.ndarray | None, j: np.ndarray, n: int, subject: str, key: str, shown: str) -> np.ndarray:
    if roi is None:
        return np.full(n, DEFAULT_ROI, dtype=object)
    roi = roi.astype(str)
    out = np.empty(n, dtype=object)
    out[j] = roi
    if np.any(out[j] != roi):
        raise DatasetError(f"{key}: {shown}: subject {subject} gives one neuroid several rois")
    return out


def check_stimuli(recording: Recording, stimulus_ids: list[str], key: str, shown: str, dataset: str) -> None:
    """Every stimulus of the recording must be in the stimuli dataset (by its stimulus_id label)."""
    known = set(stimulus_ids)
    missing = [s for s in recording.stimulus_ids.tolist() if s not in known]
    if missing:
        listed = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise DatasetError(f"{key}: {shown}: subject {recording.subject}: stimulus id(s) {listed} are not in "
                           f"the stimuli of dataset {dataset!r} ({len(missing)} of {len(recording.stimulus_ids)} "
                           f"missing)")


def check_repetitions(recording: Recording, key: str, shown: str) -> None:
    """A split-half ceiling needs at least two presentations of the stimuli."""
    if recording.values.shape[1] < 2:
        raise DatasetError(f"{key}: {shown}: subject {recording.subject} has a single repetition per stimulus; "
                           f"a noise ceiling (brain.ceiling: split_half) needs at least 2 (or set brain.ceiling: none)")
