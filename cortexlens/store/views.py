"""The SQL contract: DuckDB views over the store, one per table (see DESIGN.md).

Views read exactly the files listed in complete manifests, so a running or killed extraction or
analysis is invisible until it finishes. A table with no files yet is an empty view with the
contracted columns, so queries written against the contract always bind.

Extraction views are declared here. Each analysis declares its own result views (`ResultView`) in
its package's `plugin.py` (see `cortexlens.plugins`); `all_views()` gathers them, so a new analysis
adds views without editing this module.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cortexlens.errors import StoreError
from cortexlens.models.hooks import CANONICAL_SUFFIX
from cortexlens.store import catalog, layout

HIVE_TYPES = {"model": "VARCHAR", "dataset": "VARCHAR", "hook": "VARCHAR", "layer": "INTEGER"}


@dataclass(frozen=True)
class View:
    name: str
    columns: dict[str, str]  # the contracted columns and their DuckDB types, in order
    files: Callable[[Path], list[Path]]
    extra: dict[str, str] | None = None  # derived columns: name -> SQL expression

    def sql(self, store: Path) -> str:
        files = self.files(store)
        if not files:
            return _empty(self.name, self.columns)
        paths = _quoted(files)
        hive = ", ".join(f"'{k}': '{v}'" for k, v in HIVE_TYPES.items() if f"{k}=" in str(files[0]))
        source = f"read_parquet([{paths}], hive_partitioning = true, hive_types = {{{hive}}})"
        select = ", ".join(self.columns)
        if self.extra:
            select += ", " + ", ".join(f"{expr} AS {name}" for name, expr in self.extra.items())
        return f"CREATE VIEW {self.name} AS SELECT {select} FROM {source}"


def _manifest_files(table: str) -> Callable[[Path], list[Path]]:
    """The files of complete extractions: the catalog's list, which the numpy reader reads too."""
    def files(store: Path) -> list[Path]:
        return catalog.table_files(store, table)
    return files


def _hook_name_sql() -> str:
    """blocks.<layer>.<TransformerLens suffix> for aliases; module hooks keep their `module:` name."""
    cases = " ".join(f"WHEN '{alias}' THEN 'blocks.' || layer || '.{suffix}'"
                     for alias, suffix in CANONICAL_SUFFIX.items())
    return f"CASE hook {cases} ELSE hook END"


EXTRACTION_VIEWS: tuple[View, ...] = (
    View("documents", {"model": "VARCHAR", "dataset": "VARCHAR", "doc_id": "BIGINT", "text": "VARCHAR",
                       "n_tokens": "INTEGER", "truncated": "BOOLEAN", "labels": "MAP(VARCHAR, VARCHAR)"},
         _manifest_files("documents")),
    View("tokens", {"model": "VARCHAR", "dataset": "VARCHAR", "doc_id": "BIGINT", "pos": "INTEGER",
                    "token_id": "INTEGER", "token": "VARCHAR"},
         _manifest_files("tokens")),
    View("activations", {"model": "VARCHAR", "dataset": "VARCHAR", "hook": "VARCHAR", "layer": "INTEGER",
                         "doc_id": "BIGINT", "pos": "INTEGER", "act": "FLOAT[]"},
         _manifest_files("activations"), extra={"hook_name": _hook_name_sql()}),
    View("pooled", {"model": "VARCHAR", "dataset": "VARCHAR", "hook": "VARCHAR", "layer": "INTEGER",
                    "doc_id": "BIGINT", "pooling": "VARCHAR", "act": "FLOAT[]", "n_tokens": "INTEGER"},
         _manifest_files("pooled"), extra={"hook_name": _hook_name_sql()}),
)



def _quoted(files: list[Path]) -> str:
    return ", ".join("'" + str(f).replace("'", "''") + "'" for f in files)


def _empty(name: str, columns: dict[str, str]) -> str:
    cols = ", ".join(f"NULL::{typ} AS {col}" for col, typ in columns.items())
    return f"CREATE VIEW {name} AS SELECT {cols} WHERE false"


@dataclass(frozen=True)
class ResultView:
    """A view over one result table that analysis stages write with `store.results.ResultWriter`.

    The contracted columns come first, cast to their declared types; any further columns a stage
    writes follow (columns may grow). Files of different runs are unioned by column name.
    """

    name: str
    table: str  # the table name passed to ResultWriter.write_unit
    columns: dict[str, str]  # contracted columns and their DuckDB types, in order
    stage: str | None = None  # only results of this stage (None: any stage writing `table`)
    description: str = ""

    def files(self, store: Path) -> list[Path]:
        out = []
        for manifest_path in layout.result_manifests(store):
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
            if self.stage is not None and manifest.get("stage") != self.stage:
                continue
            table = manifest.get("tables", {}).get(self.table)
            if table:
                out += [manifest_path.parent / rel for rel in table["files"]]
        return out

    def sql(self, store: Path) -> str:
        files = self.files(store)
        if not files:
            return _empty(self.name, self.columns)
        contracted = ", ".join(f"CAST({col} AS {typ}) AS {col}" for col, typ in self.columns.items())
        rest = ", ".join(self.columns)
        source = f"read_parquet([{_quoted(files)}], union_by_name = true)"
        return f"CREATE VIEW {self.name} AS SELECT {contracted}, * EXCLUDE ({rest}) FROM {source}"


def all_views() -> list[View | ResultView]:
    """The extraction views, then every analysis plugin's result views (names must be unique)."""
    from cortexlens.plugins import plugin_views

    views: list[View | ResultView] = [*EXTRACTION_VIEWS, *plugin_views()]
    names = [view.name for view in views]
    duplicated = sorted({name for name in names if names.count(name) > 1})
    if duplicated:
        raise StoreError(f"views: {', '.join(duplicated)} declared more than once (see the plugins' views)")
    return views

