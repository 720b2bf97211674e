"""Read-only SQL over the store: `connect()` for Python, `query()` for the CLI.

Read-only is enforced twice: only SELECT-like statements are accepted (COPY, ATTACH, INSTALL, CREATE,
SET ... are refused before they run), and the connection's configuration is locked after the views
are created, so a query cannot re-enable extension loading.

Confined to the store: once the views exist, external access is switched off with the store's
directory as the one allowed exception, and the configuration locked. `read_text('/etc/passwd')`,
`glob('/root/*')` or `read_parquet` of any file outside the store fail; the views, which read only
files inside it, answer. So a query, a report's SQL file or a future SQL endpoint cannot be turned
into a file reader.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from cortexlens.errors import StoreError
from cortexlens.store.views import all_views

ALLOWED = {duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN}


def connect(store: str | Path, threads: int | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with one view per table of the SQL contract, confined to the store.

    `threads=1` makes floating-point aggregates reproducible to the last bit (parallel partial sums
    combine in whatever order the threads finish); the report uses it, since its plot data is a DVC
    output whose hash dvc.lock records."""
    # Absolute and with symlinks resolved: DuckDB compares allowed directories with the paths it opens.
    store = Path(store).resolve()
    con = duckdb.connect(":memory:", config={
        "autoinstall_known_extensions": False,  # never reach for the network
        "autoload_known_extensions": False,
    })
    for view in all_views():
        con.execute(view.sql(store))
    if threads is not None:
        con.execute(f"SET threads = {int(threads)}")
    con.execute("SET allowed_directories = $dirs", {"dirs": [f"{store}/"]})
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    return con


@dataclass
class Result:
    columns: list[str]
    types: list[str]
    rows: list[tuple[Any, ...]]


def check_read_only(con: duckdb.DuckDBPyConnection, query: str) -> None:
    try:
        statements = con.extract_statements(query)
    except duckdb.Error as err:
        raise StoreError(f"query: {_first_line(err)}") from None
    if len(statements) != 1:
        raise StoreError(f"query: expected one statement, got {len(statements)}")
    kind = statements[0].type
    if kind not in ALLOWED:
        word = kind.name.replace("_", " ")
        raise StoreError(f"query: refused {word} statement: the store is read-only "
                         f"(SELECT, WITH, DESCRIBE, SHOW, SUMMARIZE and EXPLAIN are allowed)")


def query(store: str | Path, sql: str) -> Result:
    con = connect(store)
    try:
        check_read_only(con, sql)
        cursor = con.execute(sql)
        columns = [d[0] for d in cursor.description]
        types = [str(d[1]) for d in cursor.description]
        return Result(columns, types, cursor.fetchall())
    except duckdb.PermissionException as err:
        raise StoreError(f"query: {outside_store(err)}") from None
    except duckdb.Error as err:
        raise StoreError(f"query: {_first_line(err)}") from None
    finally:
        con.close()


def outside_store(err: duckdb.PermissionException) -> str:
    """The one line for a query that tried to read a file outside the store."""
    detail = str(err).splitlines()[0].removeprefix("Permission Error: ")
    detail = detail.split(" - file system operations are disabled", 1)[0]
    return f"refused: SQL reads the store's views and files only ({detail})"


def _first_line(err: BaseException) -> str:
    lines = [line for line in str(err).splitlines() if line.strip()]
    return " ".join(lines[:2]) if lines else type(err).__name__
