"""Run query files over the store's read-only SQL views."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from cortexlens.errors import ConfigError, StoreError
from cortexlens.report.spec import QuerySpec
from cortexlens.store.sql import check_read_only, connect, outside_store


@dataclass(frozen=True)
class QueryResult:
    spec: QuerySpec
    columns: list[str]
    rows: list[tuple[Any, ...]]
    seconds: float

    def column(self, name: str) -> list[Any]:
        i = self.columns.index(name)
        return [row[i] for row in self.rows]


def run_queries(store: Path, specs: list[QuerySpec],
                on_done: Callable[[QueryResult], None] | None = None) -> list[QueryResult]:
    """Every query on one connection; the first failure raises with the file's name.

    One DuckDB thread: the results (plot CSVs, figures, the page) are DVC outputs that must be the same
    bytes on every run of the same inputs, and parallel float sums are not."""
    con = connect(store, threads=1)
    try:
        results = []
        for spec in specs:
            result = run_query(con, spec)
            if on_done:
                on_done(result)
            results.append(result)
        return results
    finally:
        con.close()


def run_query(con: duckdb.DuckDBPyConnection, spec: QuerySpec) -> QueryResult:
    try:
        check_read_only(con, spec.sql)
    except StoreError as err:
        raise StoreError(f"{spec.path}: {err.lines[0].removeprefix('query: ')}") from None
    started = time.perf_counter()
    try:
        cursor = con.execute(spec.sql)
        columns = [d[0] for d in cursor.description]
        rows = cursor.fetchall()  # drains the result: the connection is free for the next query
    except duckdb.PermissionException as err:
        raise StoreError(f"{spec.path}: {outside_store(err)}") from None
    except duckdb.Error as err:
        first = " ".join(line.strip() for line in str(err).splitlines()[:2] if line.strip())
        raise StoreError(f"{spec.path}: {first}") from None
    result = QueryResult(spec, columns, rows, time.perf_counter() - started)
    _check_chart_columns(result)
    return result


def _check_chart_columns(result: QueryResult) -> None:
    """A chart naming a column the query does not return fails even when there are no rows."""
    for column in result.spec.chart.columns():
        if column not in result.columns:
            raise ConfigError(f"{result.spec.path}: chart: column {column!r} is not in the result "
                              f"(columns: {', '.join(result.columns)})")
