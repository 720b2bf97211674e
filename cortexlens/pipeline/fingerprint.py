"""What a stage's result depends on: the content of its deps and the values of its params keys.

The Prefect flow keys its task cache on this, and the stage template keys result resumption on it,
so both re-use work exactly when `dvc repro` would skip the stage. Files are hashed by streaming
(xxh3-128, `store.atomic.checksum_file`), never read whole. Directories holding store manifests are
summarised by their manifests alone: a manifest lists the checksum of every Parquet file it covers,
so hashing it identifies gigabytes of activations without re-reading them. Unfinished extractions
or results (no manifest yet) contribute their progress records, so a partly written store never
looks like a finished one.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cortexlens.pipeline.dvcfile import StageSpec, params_values
from cortexlens.store import layout
from cortexlens.store.atomic import checksum_file

# Files that never influence a stage's result: caches and editor or OS droppings.
_IGNORED_PARTS = {"__pycache__", ".pytest_cache", ".ipynb_checkpoints"}
_IGNORED_SUFFIXES = {".pyc", ".tmp"}


def files_of(root: Path) -> list[Path]:
    """The files that stand for `root`'s content (a store's manifests, or every file)."""
    if root.is_file():
        return [root]
    manifests = sorted(root.rglob(layout.MANIFEST))
    if manifests:
        progress = sorted(p for p in root.rglob(f"{layout.PROGRESS}/*.json")
                          if not (p.parents[1] / layout.MANIFEST).exists())
        return manifests + progress
    return sorted(p for p in root.rglob("*")
                  if p.is_file() and not _IGNORED_PARTS.intersection(p.parts) and p.suffix not in _IGNORED_SUFFIXES)


def hash_paths(paths: tuple[Path, ...] | list[Path]) -> str:
    """One digest over the relative names and content checksums of every file under `paths`
    (a missing path counts too, so creating it changes the digest)."""
    digest = hashlib.sha256()
    for root in paths:
        digest.update(f"\0root:{root.name}\0".encode())
        if not root.exists():
            digest.update(b"<missing>")
            continue
        for path in files_of(root):
            name = path.relative_to(root) if path != root else path.name
            digest.update(f"\0{name}\0{checksum_file(path)}".encode())
    return digest.hexdigest()


def stage_fingerprint(spec: StageSpec, params: dict[str, Any], root: Path) -> str:
    """Stage identity, deps content and params values, as one sha256.

    Independent of where the study lives: outputs are named relative to the study's `root` (outside
    it, e.g. on shared storage, by their absolute path), so a fresh clone computes the same fingerprint,
    and result manifests, which record it, are the same bytes in every clone (dvc.lock hashes them).
    """
    payload = {
        "stage": spec.full_name,
        "deps": hash_paths(spec.deps),
        "params": params_values(spec, params),
        # Outputs elsewhere are other files: a study whose store is moved starts its results over.
        "outs": [_relative(path, root) for path in spec.written],
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def with_produced(fingerprint: str, produced: Mapping[str, Path]) -> tuple[str, dict[str, str]]:
    """(`fingerprint` extended by the content of what a run produced, {"produced.<name>": digest}).

    For results computed from the run's own products (train_toy's head scores of the model it just
    trained): keyed on the product's content, they are never reused for other weights."""
    if not produced:
        return fingerprint, {}
    digests = {f"produced.{name}": hash_paths([Path(path)]) for name, path in sorted(produced.items())}
    payload = json.dumps([fingerprint, digests], sort_keys=True).encode()
    return hashlib.sha256(payload).hexdigest(), digests


def _relative(path: Path, root: Path) -> str:
    path, root = path.resolve(), root.resolve()
    return str(path.relative_to(root)) if path == root or root in path.parents else str(path)


def outputs_present(spec: StageSpec) -> bool:
    """Whether everything the stage declares as output exists (a cache hit is only valid then)."""
    return all(path.exists() for path in spec.written)


def manifests_under(paths: tuple[Path, ...] | list[Path]) -> dict[str, str]:
    """Fingerprints of the complete extractions and results found under `paths`, keyed by a name:
    `extract.<model>.<dataset>`, `<stage>` or `<stage>.<item>`. What a stage read, for lineage."""
    found: dict[str, str] = {}
    for root in paths:
        if not root.is_dir():
            continue
        for path in sorted(root.rglob(layout.MANIFEST)):
            manifest = json.loads(path.read_text(encoding="utf-8"))
            found[manifest_key(manifest)] = manifest.get("fingerprint", "unknown")
    return found


def manifest_key(manifest: dict[str, Any]) -> str:
    if "stage" in manifest:  # results
        return f"{manifest['stage']}.{manifest['item']}" if manifest.get("item") else manifest["stage"]
    return f"extract.{manifest['model']['name']}.{manifest['dataset']['name']}"
