"""Atomic writes of the report's files: temporary name in the same directory, fsync, rename."""

from __future__ import annotations

from pathlib import Path

from cortexlens.output import as_csv
from cortexlens.report.runner import QueryResult
from cortexlens.store.atomic import commit, temporary_path


def write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    try:
        tmp.write_text(text, encoding="utf-8")
        commit(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # only left behind if the write failed


def write_plot_data(plots_dir: Path, results: list[QueryResult]) -> list[Path]:
    """<plots_dir>/<query>.csv for every query (header only when empty); removes CSVs of deleted queries.

    These are the files dvc.yaml declares as plots; `dvc plots show --json` reads them.
    """
    written = []
    for result in results:
        path = plots_dir / f"{result.spec.name}.csv"
        write_text(path, as_csv(result.columns, result.rows) + "\n")
        written.append(path)
    keep = set(written)
    for stale in plots_dir.glob("*.csv"):
        if stale not in keep:
            stale.unlink()
    return written
