"""Result tables of an analysis stage: atomic, resumable Parquet files with a manifest written last.

    <results dir>/                     the stage's store out in dvc.yaml, e.g. <store>/probe
        manifest.json                  written last: the results are complete and visible to SQL
        <table>/<unit>.parquet         one file per unit of work (a layer, a concept, ...) and table
        _progress/plan.json            the run's fingerprint
        _progress/unit-<unit>.json     units done: their files, rows and checksums

An analysis splits its work into units and writes each unit's tables in one call; a unit is
published (every file renamed into place, then its progress record) or not at all. A killed run
re-run with the same fingerprint skips the units it finished; another fingerprint starts over. The
fingerprint covers the stage's params, code and inputs (see `cortexlens.pipeline.fingerprint`), so
changed code never reuses stale units. SQL views (`cortexlens.store.views`) read only the files a
manifest lists, so a half-written result is invisible.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from cortexlens.errors import StoreError
from cortexlens.store import layout
from cortexlens.store.atomic import (
    CHECKSUM,
    commit,
    new_checksum,
    remove_temporaries,
    temporary_path,
    write_json,
)
from cortexlens.store.shards import ShardFile
from cortexlens.store.views import ResultView

FORMAT = "cortexlens.results/1"
_UNIT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.=\-]*$")  # becomes a file name

TableData = pa.Table | Mapping[str, Sequence[Any]]


class ResultWriter:
    """Writes one stage run's result tables under `directory`.

        writer = ResultWriter(dir, stage="probe", item=None, fingerprint=fp, params=..., inputs=...)
        for unit in units:
            if not writer.done(unit):
                writer.write_unit(unit, {"probes": table})
        manifest = writer.finish({"n_probes": ...})
    """

    def __init__(self, directory: Path, *, stage: str, item: str | None, fingerprint: str,
                 params: Mapping[str, Any] | None = None, inputs: Mapping[str, str] | None = None,
                 contracts: Sequence[ResultView] = ()) -> None:
        self.directory = Path(directory)
        self.stage, self.item, self.fingerprint = stage, item, fingerprint
        self.params = dict(params or {})
        self.inputs = dict(inputs or {})
        self.contracts = {view.table: view for view in contracts}
        self._progress = self.directory / layout.PROGRESS
        self._units: dict[str, dict[str, Any]] = {}
        self.complete = self._existing_manifest() is not None
        if not self.complete:
            self._units = self._resume()

    # ------------------------------------------------------------------ state
    def _existing_manifest(self) -> dict[str, Any] | None:
        path = self.directory / layout.MANIFEST
        if path.is_file():
            manifest = json.loads(path.read_text(encoding="utf-8"))
            if manifest.get("fingerprint") == self.fingerprint:
                return manifest
        return None

    def _resume(self) -> dict[str, dict[str, Any]]:
        plan = self._progress / "plan.json"
        if plan.is_file() and json.loads(plan.read_text()).get("fingerprint") == self.fingerprint:
            remove_temporaries(self.directory)
            records = [json.loads(p.read_text()) for p in sorted(self._progress.glob("unit-*.json"))]
            return {r["unit"]: r for r in records if self._files_intact(r)}
        # Another plan (or none): what is there is stale. Start clean; the manifest goes first, so a
        # crash from here on leaves nothing that SQL would read.
        shutil.rmtree(self.directory, ignore_errors=True)
        write_json(plan, {"fingerprint": self.fingerprint, "stage": self.stage, "item": self.item})
        return {}

    def _files_intact(self, record: dict[str, Any]) -> bool:
        tables = all((self.directory / rel).is_file() for files in record["tables"].values() for rel in files)
        return tables and all((self.directory / rel).is_file() for rel in record.get("files", {}))

    @property
    def manifest(self) -> dict[str, Any] | None:
        """The complete run's manifest (when `complete`), else None."""
        return self._existing_manifest()

    def done(self, unit: str) -> bool:
        """Whether `unit` was published by this run or by an interrupted run with the same fingerprint."""
        return self.complete or unit in self._units

    @property
    def units_done(self) -> list[str]:
        return list(self._units)

    def read(self, table: str) -> pa.Table | None:
        """Every row of `table` written so far (by this run, a resumed one, or the complete results),
        in unit order; None when no unit wrote it. For metrics and for units that feed later ones."""
        import pyarrow.parquet as pq

        if self.complete:
            manifest = self.manifest or {}
            files = list(manifest.get("tables", {}).get(table, {}).get("files", {}))
        else:
            files = [rel for entry in self._units.values() for rel in entry["tables"].get(table, {})]
        if not files:
            return None
        return pa.concat_tables([pq.read_table(self.directory / rel) for rel in files], promote_options="default")

    # ------------------------------------------------------------------ writing
    def write_unit(self, unit: str, tables: Mapping[str, TableData],
                   extra_files: Mapping[str, bytes] | None = None) -> None:
        """Publish every table of one unit (and `extra_files`: relative name -> bytes, e.g. weights)
        atomically, then record the unit as done. A unit that fails part-way is not recorded: a re-run
        writes it again, and nothing of it is listed in the manifest."""
        if self.complete:
            raise StoreError(f"{self.directory}: results are complete; nothing more can be written")
        if not _UNIT.match(unit):
            raise ValueError(f"unit name {unit!r} must be letters, digits, '_', '.', '=', '-'")
        arrow = {name: self._checked(name, data) for name, data in tables.items()}
        files: dict[str, dict[str, Any]] = {}
        written: list[ShardFile] = []
        try:
            for name, table in arrow.items():
                shard = ShardFile(self.directory, f"{name}/{unit}.parquet", table.schema, "zstd",
                                  max(table.num_rows, 1))
                written.append(shard)
                for batch in table.to_batches():
                    shard.append(batch)
                record = shard.close()
                files[name] = {record.path: {"rows": record.rows, CHECKSUM: record.checksum}}
            artifacts = {rel: self._write_file(rel, data) for rel, data in (extra_files or {}).items()}
        except BaseException:
            for shard in written:
                shard.abort()
            raise
        entry = {"unit": unit, "tables": files, "files": artifacts}
        write_json(self._progress / f"unit-{unit}.json", entry)
        self._units[unit] = entry

    def _write_file(self, relative: str, data: bytes) -> dict[str, Any]:
        if relative.startswith(("/", ".")) or ".." in Path(relative).parts or relative.split("/")[0] == layout.PROGRESS:
            raise ValueError(f"file name {relative!r} must be relative, inside the results directory")
        final = self.directory / relative
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = temporary_path(final)
        tmp.write_bytes(data)
        commit(tmp, final)
        digest = new_checksum()
        digest.update(data)
        return {"bytes": len(data), CHECKSUM: digest.hexdigest()}

    def _checked(self, name: str, data: TableData) -> pa.Table:
        if not re.match(r"^[a-z][a-z0-9_]*$", name):
            raise ValueError(f"table name {name!r} must be lower-case letters, digits and '_'")
        table = data if isinstance(data, pa.Table) else pa.table(dict(data))
        view = self.contracts.get(name)
        if view is not None:
            missing = [c for c in view.columns if c not in table.column_names]
            if missing:
                raise StoreError(f"{self.stage}: table {name!r} lacks the contracted column(s) "
                                 f"{', '.join(missing)} of view {view.name!r}")
        return table

    def finish(self, summary: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Write the manifest (the results become visible to SQL) and drop the progress records."""
        if self.complete:
            manifest = self.manifest
            assert manifest is not None
            return manifest
        tables: dict[str, dict[str, Any]] = {}
        artifacts: dict[str, dict[str, Any]] = {}
        for entry in self._units.values():
            for name, files in entry["tables"].items():
                table = tables.setdefault(name, {"rows": 0, "files": {}})
                table["files"].update(files)
                table["rows"] += sum(f["rows"] for f in files.values())
            artifacts.update(entry.get("files", {}))
        manifest = {
            "format": FORMAT, "stage": self.stage, "item": self.item, "fingerprint": self.fingerprint,
            "params": self.params, "inputs": self.inputs, "tables": tables, "files": artifacts,
            "units": list(self._units),
            "summary": dict(summary or {}), "versions": _versions(),
        }  # no timings: the manifest is part of the stage's DVC output, whose hash dvc.lock records
        write_json(self.directory / layout.MANIFEST, manifest)
        shutil.rmtree(self._progress, ignore_errors=True)
        self.complete = True
        return manifest


def _versions() -> dict[str, str]:
    import duckdb

    import cortexlens

    return {"cortexlens": cortexlens.__version__, "pyarrow": pa.__version__, "duckdb": duckdb.__version__}
