"""What the store holds, read from the manifests of complete extractions only.

One list of files serves every reader: the SQL views (`views.py`) and the numpy reader (`reader.py`)
both take their files from here, so they cannot disagree about what is in the store. An extraction
without `manifest.json` (running, killed) does not exist for either. Nothing here reads Parquet data,
and nothing imports torch: `cortexlens sql` imports this module and must start in well under a second.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cortexlens.errors import StoreError
from cortexlens.models.hooks import HookPoint
from cortexlens.store import layout
from cortexlens.store.atomic import CHECKSUM

TABLES = ("documents", "tokens", "activations", "pooled")
PER_POINT = ("activations", "pooled")  # tables with one file per hook point and shard

# A hook point as callers write it: HookPoint("resid_post", 3), ("resid_post", 3), or a stored name
# ("blocks.3.hook_resid_post", "module:transformer.h.3.mlp").
PointLike = HookPoint | tuple[str, int] | str


@dataclass(frozen=True)
class FileInfo:
    path: Path  # absolute
    rows: int
    checksum: str  # xxh3-128 as recorded in the manifest
    shard: int


@dataclass(frozen=True)
class HookInfo:
    hook: str
    layer: int
    name: str  # canonical: blocks.3.hook_resid_post, or the module: string
    width: int  # stored vector length

    @property
    def point(self) -> HookPoint:
        return HookPoint(self.hook, self.layer)


@dataclass(frozen=True)
class Extraction:
    """One complete extraction: <store>/extract/model=<model>/dataset=<dataset>/ with its manifest."""

    model: str
    dataset: str
    directory: Path
    fingerprint: str
    manifest: dict[str, Any] = field(repr=False, compare=False, hash=False)

    @property
    def label(self) -> str:
        return f"{self.model}/{self.dataset}"

    def hooks(self) -> list[HookInfo]:
        return [HookInfo(h["hook"], int(h["layer"]), h["name"], int(h["width"] or 0))
                for h in self.manifest["hooks"]]

    def point(self, hook: PointLike, layer: int | None = None) -> HookInfo:
        """The stored hook point `hook` names; StoreError listing the stored ones if there is none."""
        wanted = as_point(hook, layer)
        for info in self.hooks():
            if (wanted is None and info.name == hook) or info.point == wanted:
                return info
        stored = ", ".join(info.name for info in self.hooks()) or "none"
        raise StoreError(f"store: no hook point {_describe(hook, wanted)} in extraction {self.label} of "
                         f"{self.directory.parents[2]} (stored: {stored})")

    def width(self, hook: PointLike, layer: int | None = None) -> int:
        return self.point(hook, layer).width

    def poolings(self) -> list[str]:
        return list(self.manifest.get("settings", {}).get("pooling") or [])

    def store_dtype(self) -> str:
        return self.manifest.get("settings", {}).get("store_dtype", "float32")

    def files(self, table: str, hook: PointLike | None = None, layer: int | None = None) -> list[FileInfo]:
        """The table's files in shard order; for activations/pooled, one hook point's if one is given."""
        if table not in TABLES:
            raise ValueError(f"unknown table {table!r}; tables: {', '.join(TABLES)}")
        if hook is not None and table not in PER_POINT:
            raise ValueError(f"table {table!r} has no hook points")
        point = self.point(hook, layer).point if hook is not None else None
        per_point = layout.activation_file if table == "activations" else layout.pooled_file
        out = []
        for shard in sorted(self.manifest["shards"], key=lambda s: s["shard"]):
            for rel, rec in shard["files"].items():
                if point is not None:
                    keep = rel == per_point(shard["shard"], point)
                else:
                    keep = rel.split("/", 1)[0] == table
                if keep:
                    out.append(FileInfo(self.directory / rel, int(rec["rows"]), rec.get(CHECKSUM, ""),
                                        int(shard["shard"])))
        return out

    def rows(self, table: str, hook: PointLike | None = None, layer: int | None = None) -> int:
        """Row count from the manifest alone: token rows (activations, tokens), documents, pooled rows.

        Without a hook point, activations/pooled count every hook point's rows (as SQL count(*) does).
        """
        return sum(f.rows for f in self.files(table, hook, layer))


def as_point(hook: PointLike, layer: int | None = None) -> HookPoint | None:
    """HookPoint from any accepted spelling; None for a bare name (matched against stored names)."""
    if isinstance(hook, HookPoint):
        return hook
    if isinstance(hook, tuple):
        if len(hook) != 2:
            raise ValueError(f"a hook point is (hook, layer), not {hook!r}")
        return HookPoint(str(hook[0]), int(hook[1]))
    if layer is not None:
        return HookPoint(hook, int(layer))
    return None


def _describe(hook: PointLike, point: HookPoint | None) -> str:
    if point is None:
        return str(hook)
    try:
        return point.name
    except KeyError:  # an alias that does not exist has no canonical name
        return f"{point.hook} layer {point.layer}"


def _load(manifest_path: Path) -> Extraction:
    directory = manifest_path.parent.absolute()  # file paths stay valid whatever the working directory
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise StoreError(f"store: cannot read manifest {manifest_path}: {err}") from None
    model = directory.parent.name.removeprefix("model=")
    dataset = directory.name.removeprefix("dataset=")
    return Extraction(model, dataset, directory, manifest.get("fingerprint", ""), manifest)


def extractions(store: Path) -> list[Extraction]:
    """Complete extractions (those with a manifest), sorted by model, dataset."""
    found = [_load(path) for path in layout.manifests(Path(store))]
    return sorted(found, key=lambda e: (e.model, e.dataset))


def extraction(store: Path, model: str, dataset: str) -> Extraction:
    """The complete extraction of `model` on `dataset`; StoreError naming what exists otherwise."""
    store = Path(store)
    manifest_path = layout.extraction_dir(store, model, dataset) / layout.MANIFEST
    if manifest_path.is_file():
        return _load(manifest_path)
    complete = ", ".join(e.label for e in extractions(store)) or "none"
    raise StoreError(f"store: no complete extraction of model {model!r} dataset {dataset!r} in {store} "
                     f"(complete: {complete})")


def table_files(store: Path, table: str) -> list[Path]:
    """Every complete file of `table` across extractions (what the SQL view of that table reads)."""
    return [f.path for e in extractions(store) for f in e.files(table)]
