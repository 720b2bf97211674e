"""What manifests and lineage record about a loaded model."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelIdentity:
    """What the manifest records about the model (and what the fingerprint depends on)."""

    name: str  # the key under `models:` in params.yaml
    source: str  # as written in params.yaml: an alias, a directory or a hub id
    revision: str  # the hub commit, or "sha256:<hex>" over a local directory's files
    dtype: str  # compute dtype the weights were loaded in
    attn_implementation: str | None  # None: transformers' default
