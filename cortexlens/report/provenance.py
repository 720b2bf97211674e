"""Where the report's numbers come from: the report's input fingerprint, library version, each
extraction's and each analysis result's manifest.

Not the git commit: the page is a DVC output whose hash dvc.lock records, and dvc.lock is committed,
so a page naming its own commit could never be committed in step. The fingerprint is what `dvc repro`
decides on (the code, params and store the report read); the report's MLflow run is tagged with the
commit."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import cortexlens
from cortexlens.store import catalog, layout

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
class Result:
    """One analysis stage's complete results (a result manifest)."""

    stage: str
    item: str | None
    fingerprint: str
    tables: dict[str, int]  # table -> rows
    inputs: dict[str, str]  # what it read: name -> fingerprint


@dataclass(frozen=True)
class Provenance:
    fingerprint: str  # the report stage's: its deps' content (code, store) and params values
    version: str
    extractions: list[Extraction]
    results: list[Result] = field(default_factory=list)


def extractions(store: Path) -> list[Extraction]:
    """One entry per complete extraction (the catalog the SQL views read), sorted by model, dataset."""
    out = []
    for ext in catalog.extractions(store):
        manifest = ext.manifest
        model, dataset, rows = manifest["model"], manifest["dataset"], manifest.get("rows", {})
        out.append(Extraction(
            model=ext.model, source=model.get("source") or UNKNOWN,
            revision=model.get("revision") or UNKNOWN, dataset=ext.dataset,
            fingerprint=ext.fingerprint or UNKNOWN, n_docs=int(dataset.get("n_docs", 0)),
            tokens=int(rows.get("tokens", 0)), activation_rows=int(rows.get("activations", 0)),
        ))
    return out


def results(store: Path) -> list[Result]:
    """One entry per complete analysis result (the manifests the result views read), by stage, item."""
    out = []
    for path in layout.result_manifests(store):
        manifest = json.loads(path.read_text(encoding="utf-8"))
        out.append(Result(
            stage=manifest.get("stage", UNKNOWN), item=manifest.get("item"),
            fingerprint=manifest.get("fingerprint", UNKNOWN),
            tables={name: int(t.get("rows", 0)) for name, t in manifest.get("tables", {}).items()},
            inputs=dict(manifest.get("inputs", {})),
        ))
    return sorted(out, key=lambda r: (r.stage, r.item or ""))


def collect(store: Path, fingerprint: str) -> Provenance:
    return Provenance(fingerprint, cortexlens.__version__, extractions(store), results(store))
