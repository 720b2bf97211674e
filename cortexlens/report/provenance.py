"""Where the report's numbers come from: code commit, library version, and each extraction's manifest."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cortexlens
from cortexlens.store import layout
from cortexlens.tracking.lineage import git_state

UNKNOWN = "unknown"


@dataclass(frozen=True)
class Extraction:
    model: str
    source: str
    revision: str
    dataset: str
    fingerprint: str
    n_docs: int
    tokens: int
    activation_rows: int


@dataclass(frozen=True)
class Provenance:
    commit: str
    version: str
    extractions: list[Extraction]


def git_commit(directory: Path) -> str:
    """HEAD of the repository holding `directory`, or "unknown" (no git, not a repository, no commit):
    the same commit the stage's MLflow run is tagged with."""
    return git_state(directory)["git.commit"]


def extractions(store: Path) -> list[Extraction]:
    """One entry per complete extraction (the manifests the SQL views read), sorted by model, dataset."""
    out = []
    for path in layout.manifests(store):
        manifest = json.loads(path.read_text(encoding="utf-8"))
        model, dataset, rows = manifest["model"], manifest["dataset"], manifest.get("rows", {})
        out.append(Extraction(
            model=model["name"], source=model.get("source") or UNKNOWN,
            revision=model.get("revision") or UNKNOWN, dataset=dataset["name"],
            fingerprint=manifest.get("fingerprint", UNKNOWN), n_docs=int(dataset.get("n_docs", 0)),
            tokens=int(rows.get("tokens", 0)), activation_rows=int(rows.get("activations", 0)),
        ))
    return out


def collect(store: Path, repository: Path) -> Provenance:
    return Provenance(git_commit(repository), cortexlens.__version__, extractions(store))
