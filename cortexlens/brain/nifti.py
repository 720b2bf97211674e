"""fMRI recordings as NIfTI: one 4-D image of response estimates (a volume per presentation, e.g. a beta
series), a binary mask or an integer atlas selecting the voxels, and an events table giving each volume's
stimulus. Read with nibabel and nilearn (`nilearn.masking.apply_mask`); every voxel in the mask (or in a
nonzero atlas label) is a neuroid named by its voxel indices `i-j-k`, its roi the mask's `roi` name or
the atlas label's name (from `atlas_labels`: a TSV of `index` and `name`, else `label<index>`).

Events: TSV or CSV with `stimulus_id` and optionally `volume` (0-based index into the 4-D image; default:
the row order) and `repetition` (default: the presentation's count among earlier rows of its stimulus).
Modelling the haemodynamic response of a raw BOLD time series is left to tools made for it.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cortexlens.brain.recordings import Recording
from cortexlens.errors import DatasetError


@dataclass(frozen=True)
class NiftiInputs:
    key: str  # the params entry, e.g. brain.subjects[1]
    subject: str
    images: Path
    events: Path
    mask: Path | None = None
    atlas: Path | None = None
    atlas_labels: Path | None = None
    roi: str = "mask"
    shown: dict[str, str] | None = None  # field -> the path as params.yaml writes it

    def show(self, field: str) -> str:
        return (self.shown or {}).get(field, str(getattr(self, field)))


def _load(path: Path, key: str, shown: str):
    import nibabel as nib

    try:
        return nib.load(str(path))
    except Exception as err:  # noqa: BLE001 -- nibabel raises several types for a file that is not NIfTI
        raise DatasetError(f"{key}: {shown} is not a readable NIfTI image: {err}") from None


def check_shapes(inputs: NiftiInputs) -> tuple[int, tuple[int, ...]]:
    """(number of volumes, volume shape) after checking the selector image matches them; headers only."""
    images = _load(inputs.images, f"{inputs.key}.images", inputs.show("images"))
    if len(images.shape) != 4:
        raise DatasetError(f"{inputs.key}.images: {inputs.show('images')} has shape {tuple(images.shape)}; "
                           f"expected 4-D (x, y, z, one volume per presentation)")
    field = "mask" if inputs.mask is not None else "atlas"
    selector = _load(getattr(inputs, field), f"{inputs.key}.{field}", inputs.show(field))
    volume = tuple(images.shape[:3])
    if tuple(selector.shape[:3]) != volume or len(selector.shape) not in (3, 4) or (
            len(selector.shape) == 4 and selector.shape[3] != 1):
        raise DatasetError(f"{inputs.key}.{field}: {inputs.show(field)} has shape {tuple(selector.shape)}, but the "
                           f"volumes of {inputs.show('images')} have shape {volume}")
    if not np.allclose(selector.affine, images.affine, atol=1e-4):
        raise DatasetError(f"{inputs.key}.{field}: {inputs.show(field)} is not in the space of "
                           f"{inputs.show('images')} (their affines differ); resample it first")
    return int(images.shape[3]), volume


def read_events(inputs: NiftiInputs, n_volumes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(volume [m], stimulus_id [m] str, repetition [m]) of the events table."""
    key, shown = f"{inputs.key}.events", inputs.show("events")
    try:
        text = inputs.events.read_text(encoding="utf-8")
    except OSError as err:
        raise DatasetError(f"{key}: cannot read {shown}: {err}") from None
    delimiter = "\t" if "\t" in text.splitlines()[0] else ","
    rows = list(csv.DictReader(text.splitlines(), delimiter=delimiter))
    if not rows or "stimulus_id" not in rows[0]:
        raise DatasetError(f"{key}: {shown} needs a stimulus_id column (columns: {', '.join(rows[0]) if rows else 'none'})")
    stimulus = np.array([row["stimulus_id"] for row in rows], dtype=object)
    try:
        volume = np.array([int(row["volume"]) for row in rows]) if "volume" in rows[0] else np.arange(len(rows))
        seen: dict[str, int] = {}
        repetition = []
        for row in rows:
            count = seen.get(row["stimulus_id"], 0)
            seen[row["stimulus_id"]] = count + 1
            repetition.append(int(row["repetition"]) if "repetition" in row else count)
    except ValueError as err:
        raise DatasetError(f"{key}: {shown}: volume and repetition must be integers ({err})") from None
    pairs = list(zip(stimulus.tolist(), repetition))
    if len(set(pairs)) != len(pairs):
        raise DatasetError(f"{key}: {shown} lists one (stimulus_id, repetition) twice")
    if volume.min() < 0 or volume.max() >= n_volumes:
        raise DatasetError(f"{key}: {shown} names volume {int(volume.max())}, but {inputs.show('images')} has "
                           f"{n_volumes} volumes (0-{n_volumes - 1})")
    return volume, stimulus, np.asarray(repetition)


def read_nifti(inputs: NiftiInputs) -> Recording:
    """The recording: voxel responses per (stimulus, repetition)."""
    import nibabel as nib
    from nilearn.masking import apply_mask

    n_volumes, _ = check_shapes(inputs)
    volume, stimulus, repetition = read_events(inputs, n_volumes)
    images = nib.load(str(inputs.images))
    if inputs.mask is not None:
        mask_img = nib.load(str(inputs.mask))
        mask = np.asarray(mask_img.dataobj).reshape(mask_img.shape[:3]) > 0
        labels = np.full(int(mask.sum()), inputs.roi, dtype=object)
    else:
        atlas_img = nib.load(str(inputs.atlas))
        atlas = np.rint(np.asarray(atlas_img.dataobj).reshape(atlas_img.shape[:3])).astype(int)
        mask = atlas > 0
        names = _label_names(inputs)
        labels = np.array([names.get(int(v), f"label{int(v)}") for v in atlas[mask]], dtype=object)
    if not mask.any():
        field = "mask" if inputs.mask is not None else "atlas"
        raise DatasetError(f"{inputs.key}.{field}: {inputs.show(field)} selects no voxel")
    mask_img = nib.Nifti1Image(mask.astype(np.uint8), images.affine)
    data = apply_mask(images, mask_img)  # [n_volumes, n_voxels], voxels in C order of the mask
    voxels = np.argwhere(mask)
    return _recording(inputs.subject, data[volume], stimulus, repetition,
                      np.array(["-".join(map(str, v)) for v in voxels], dtype=object), labels)


def _label_names(inputs: NiftiInputs) -> dict[int, str]:
    if inputs.atlas_labels is None:
        return {}
    key, shown = f"{inputs.key}.atlas_labels", inputs.show("atlas_labels")
    text = inputs.atlas_labels.read_text(encoding="utf-8").splitlines()
    rows = list(csv.DictReader(text, delimiter="\t" if text and "\t" in text[0] else ","))
    if not rows or not {"index", "name"} <= set(rows[0]):
        raise DatasetError(f"{key}: {shown} needs columns index and name")
    return {int(row["index"]): row["name"] for row in rows}


def _recording(subject: str, data: np.ndarray, stimulus: np.ndarray, repetition: np.ndarray, neuroids: np.ndarray,
               rois: np.ndarray) -> Recording:
    stim_ids, s = np.unique(stimulus.astype(str), return_inverse=True)
    reps, k = np.unique(repetition, return_inverse=True)
    cube = np.full((len(stim_ids), len(reps), data.shape[1]), np.nan, dtype=np.float32)
    cube[s, k] = data
    return Recording(subject, stim_ids, cube, neuroids, rois)
