"""Cache keys for the flow's tasks: the content of a stage's deps and the values of its params.

Directories holding extraction manifests are summarised by their `manifest.json` files alone: a
manifest lists the checksum of every Parquet file it covers, so hashing the manifests identifies the
store's content without re-reading gigabytes of activations. Unfinished extractions (no manifest)
contribute their progress records, so a partly written store never looks like a finished one.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from cortexlens.store import layout
from flows.dvc_spec import StageSpec, lookup

# Files that never influence a stage's result: caches and editor or OS droppings.
_IGNORED_PARTS = {"__pycache__", ".pytest_cache", ".ipynb_checkpoints"}
_IGNORED_SUFFIXES = {".pyc", ".tmp"}


def _files(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    manifests = sorted(root.rglob(layout.MANIFEST))
    if manifests:
        # A store: every complete extraction's manifest, plus progress records of unfinished ones.
        progress = sorted(p for p in root.rglob("_progress/*.json")
                          if not (p.parents[1] / layout.MANIFEST).exists())
        return manifests + progress
    return sorted(p for p in root.rglob("*")
                  if p.is_file() and not _IGNORED_PARTS.intersection(p.parts) and p.suffix not in _IGNORED_SUFFIXES)


def hash_paths(paths: tuple[Path, ...] | list[Path]) -> str:
    """sha256 over the relative names and bytes of every file under `paths` (missing paths count too)."""
    digest = hashlib.sha256()
    for root in paths:
        digest.update(f"\0root:{root.name}\0".encode())
        if not root.exists():
            digest.update(b"<missing>")
            continue
        for path in _files(root):
            digest.update(f"\0{path.relative_to(root) if path != root else path.name}\0".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def params_values(spec: StageSpec, params: dict[str, Any]) -> dict[str, Any]:
    """The values of the params keys dvc.yaml lists for the stage (absent keys are None)."""
    values = {}
    for key in spec.params:
        try:
            values[key] = lookup(params, key)
        except KeyError:
            values[key] = None
    return values


def stage_fingerprint(spec: StageSpec, params: dict[str, Any]) -> str:
    """What the task's result depends on: stage identity, deps content and params values."""
    payload = {
        "stage": spec.full_name,
        "deps": hash_paths(spec.deps),
        "params": params_values(spec, params),
        # Two studies with equal params in different directories write different files.
        "outs": [str(path) for path in spec.outs],
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def outputs_present(spec: StageSpec) -> bool:
    """Whether everything the stage declares as output exists (a cache hit is only valid then)."""
    return all(path.exists() for path in spec.outs)
