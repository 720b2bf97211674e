"""report: run the SQL files of report.queries over the store and write the study's HTML report.

    python -m stages.report

Writes <paths.reports>/index.html (self-contained: figures embedded, nothing fetched when viewed),
<paths.reports>/plots/<query>.csv (the plot data dvc.yaml declares) and
reports/metrics/report.json. With tracking on, the run is recorded in MLflow as `report`, with the
fingerprint of every extraction it read, and the page and its plot data logged as artifacts.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cortexlens.config import Study, load_study
from cortexlens.report import build_report
from cortexlens.report.provenance import extractions
from cortexlens.report.runner import QueryResult
from cortexlens.tracking import stage_run
from stages.common import metrics_file, parser, stage_main, write_metrics


def run(study: Study, progress: bool = True) -> dict[str, Any]:
    """Build the report from the study's store; returns the stage metrics."""
    settings = study.params.report

    def show(result: QueryResult) -> None:
        print(f"  {result.spec.name}: {len(result.rows)} rows in {result.seconds:.2f} s", file=sys.stderr)

    tracked_params = {"report": settings.model_dump(mode="json"), "study": study.params.study}
    with stage_run(study, "report", params=tracked_params, inputs=_extractions(study.store_dir)) as tracked:
        metrics = _build(study, show if progress else None)
        tracked.log_metrics(metrics)
        tracked.log_artifact(study.reports_dir / "index.html", "report")
        plots = study.reports_dir / "plots"
        if plots.is_dir():
            tracked.log_artifacts(plots, "report/plots")
    return metrics


def _extractions(store: Path) -> dict[str, str]:
    """The fingerprint of every complete extraction the report reads, keyed model/dataset."""
    return {f"extract.{e.model}.{e.dataset}": e.fingerprint for e in extractions(store)}


def _build(study: Study, on_query: Callable[[QueryResult], None] | None) -> dict[str, Any]:
    settings = study.params.report
    built = build_report(
        study=study.params.study, params=study.params.model_dump(mode="json"), store=study.store_dir,
        queries=study.path(settings.queries), out_dir=study.reports_dir,
        toy_metrics=metrics_file(study.reports_dir, "train_toy"), repository=study.root,
        max_table_rows=settings.max_table_rows, on_query=on_query,
    )
    metrics = {
        "queries": len(built.results),
        "figures": built.figures,
        "tables": sum(not r.spec.chart.is_figure for r in built.results),
        "empty_queries": sum(not r.rows for r in built.results),
        "seconds": round(built.seconds, 3),
        # Timings sit under keys named `seconds`, as in every stage's metrics, so comparisons of two
        # runs can drop them and compare the rest.
        "per_query": {r.spec.name: {"rows": len(r.rows), "seconds": round(r.seconds, 3)} for r in built.results},
    }
    write_metrics(metrics_file(study.reports_dir, "report"), metrics)
    return metrics


@stage_main
def main(argv: list[str] | None = None) -> None:
    args = parser(__doc__.splitlines()[0]).parse_args(argv)
    study = load_study(args.params)
    metrics = run(study, progress=not args.no_progress)
    print(f"report: {metrics['queries']} queries, {metrics['figures']} figures in {metrics['seconds']:.1f} s "
          f"-> {study.reports_dir / 'index.html'}")


if __name__ == "__main__":
    main()
