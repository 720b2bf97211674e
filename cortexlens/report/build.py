"""Build the report: read the query files, run them, draw, and write index.html and the plot data.

Everything is computed before anything is written, so a bad query file or a failing query leaves
the previous report in place; each file is then replaced atomically, index.html last.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from cortexlens.report.figures import render_chart
from cortexlens.report.files import write_plot_data, write_text
from cortexlens.report.html import Block, Page, render
from cortexlens.report.provenance import collect
from cortexlens.report.runner import QueryResult, run_queries
from cortexlens.report.spec import load_queries
from cortexlens.report.toy import load_toy

INDEX = "index.html"
PLOTS = "plots"


@dataclass(frozen=True)
class Built:
    index: Path
    plot_files: list[Path]
    results: list[QueryResult]
    figures: int  # images in the page, the toy model's included
    seconds: float


def build_report(*, study: str, params: dict[str, Any], store: Path, queries: Path, out_dir: Path,
                 toy_metrics: Path | None, fingerprint: str, max_table_rows: int,
                 on_query: Callable[[QueryResult], None] | None = None) -> Built:
    """Write <out_dir>/index.html and <out_dir>/plots/<query>.csv.

    `params` is the validated params as plain data (shown as YAML); `fingerprint` identifies what the
    page was built from (the report stage's inputs); `toy_metrics` is train_toy's metrics file, if any.
    """
    started = time.perf_counter()
    specs = load_queries(queries)
    results = run_queries(store, specs, on_query)
    page = Page(study=study, max_table_rows=max_table_rows, provenance=collect(store, fingerprint),
                params_yaml=yaml.safe_dump(params, sort_keys=False, allow_unicode=True),
                toy=load_toy(toy_metrics) if toy_metrics else None)
    figures = 1 if page.toy is not None and page.toy.png is not None else 0
    for result in results:
        png = render_chart(result)
        figures += png is not None
        page.sections.setdefault(result.spec.section, []).append(Block(result, png))
    plot_files = write_plot_data(out_dir / PLOTS, results)
    index = out_dir / INDEX
    write_text(index, render(page))
    return Built(index, plot_files, results, figures, time.perf_counter() - started)
