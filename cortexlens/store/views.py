"""The SQL contract: DuckDB views over the store, one per table (see DESIGN.md).

Extraction views read exactly the files listed in complete manifests, so a running or killed
extraction is invisible until it finishes. A table with no files yet is an empty view with the
contracted columns, so queries written against the contract always bind.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cortexlens.models.hooks import CANONICAL_SUFFIX
from cortexlens.store import layout

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
            cols = ", ".join(f"NULL::{typ} AS {name}" for name, typ in self.columns.items())
            return f"CREATE VIEW {self.name} AS SELECT {cols} WHERE false"
        paths = ", ".join("'" + str(f).replace("'", "''") + "'" for f in files)
        hive = ", ".join(f"'{k}': '{v}'" for k, v in HIVE_TYPES.items() if f"{k}=" in str(files[0]))
        source = f"read_parquet([{paths}], hive_partitioning = true, hive_types = {{{hive}}})"
        select = ", ".join(self.columns)
        if self.extra:
            select += ", " + ", ".join(f"{expr} AS {name}" for name, expr in self.extra.items())
        return f"CREATE VIEW {self.name} AS SELECT {select} FROM {source}"


def _manifest_files(table: str) -> Callable[[Path], list[Path]]:
    def files(store: Path) -> list[Path]:
        out = []
        for manifest_path in layout.manifests(store):
            manifest = json.loads(manifest_path.read_text())
            base = manifest_path.parent
            out += [base / rel for shard in manifest["shards"] for rel in shard["files"]
                    if rel.split("/", 1)[0] == table]
        return out
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

# Analysis issues append their views here (sae_runs, probes, patching, sparsity, brain_scores).
VIEWS: list[View] = list(EXTRACTION_VIEWS)

