"""Read-only SQL over the store: `connect()` for Python, `query()` for the CLI.

Read-only is enforced twice: only SELECT-like statements are accepted (COPY, ATTACH, INSTALL, CREATE,
SET ... are refused before they run), and the connection's configuration is locked after the views
are created, so a query cannot re-enable extension loading.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from cortexlens.errors import StoreError
from cortexlens.store.views import all_views

ALLOWED = {duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN}


def connect(store: str | Path) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with one view per table of the SQL contract."""
    store = Path(store)
    con = duckdb.connect(":memory:", config={
        "autoinstall_known_extensions": False,  # never reach for the network
        "autoload_known_extensions": False,
    })
    for view in all_views():
        con.execute(view.sql(store))
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
    except duckdb.Error as err:
        raise StoreError(f"query: {_first_line(err)}") from None
    finally:
        con.close()


def _first_line(err: BaseException) -> str:
    lines = [line for line in str(err).splitlines() if line.strip()]
    return " ".join(lines[:2]) if lines else type(err).__name__
