"""report: run the SQL files of report.queries over the store and write the study's HTML report.

    python -m stages.report

Writes <paths.reports>/index.html (self-contained: figures embedded, nothing fetched when viewed),
<paths.reports>/plots/<query>.csv (the plot data dvc.yaml declares) and the metrics file. With
tracking on, the run is recorded in MLflow as `report`, with the fingerprint of every extraction and
result it read, and the page and its plot data logged as artifacts.
"""

from __future__ import annotations

import sys
from typing import Any

from cortexlens.pipeline.stage import Stage, StageContext
from cortexlens.report import build_report
from cortexlens.report.runner import QueryResult


def run(ctx: StageContext) -> dict[str, Any]:
    """Build the report from the study's store; returns the stage metrics."""
    study, settings = ctx.study, ctx.study.params.report

    def show(result: QueryResult) -> None:
        print(f"  {result.spec.name}: {len(result.rows)} rows in {result.seconds:.2f} s", file=sys.stderr)

    built = build_report(
        study=study.params.study, params=study.params.model_dump(mode="json", exclude_none=True),
        store=study.store_dir, queries=study.path(settings.queries), out_dir=study.reports_dir,
        toy_metrics=ctx.metrics_of("train_toy"), fingerprint=ctx.fingerprint,
        max_table_rows=settings.max_table_rows, on_query=show if ctx.progress else None,
    )
    ctx.tracked.log_artifact(built.index, "report")
    if built.plot_files:
        ctx.tracked.log_artifacts(built.index.parent / "plots", "report/plots")
    return {
        "queries": len(built.results),
        "figures": built.figures,
        "tables": sum(not r.spec.chart.is_figure for r in built.results),
        "empty_queries": sum(not r.rows for r in built.results),
        "rows": {r.spec.name: len(r.rows) for r in built.results},
        # Timings go to MLflow only (seconds.<name>): the metrics file is compared across experiments.
        "timings": {"build": round(built.seconds, 3), **{r.spec.name: round(r.seconds, 3) for r in built.results}},
    }


def summary(metrics: dict[str, Any]) -> str:
    return f"report: {metrics['queries']} queries, {metrics['figures']} figures in {metrics['timings']['build']:.1f} s"


STAGE = Stage("report", run, summary=summary)

if __name__ == "__main__":
    STAGE.main()
