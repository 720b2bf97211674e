"""The pipeline as a Prefect flow: the same stage functions as `dvc repro`, run as tasks.

    python -m flows.pipeline --params params.yaml          # threads (default) or flow.task_runner
    python -m flows.pipeline --params params.yaml --dask tcp://scheduler:8786

Stages run in dvc.yaml order; the items of a `matrix:` stage (one `extract` per model) fan out
through the task runner: threads by default, a Dask cluster with `flow.task_runner: dask` (a
`LocalCluster` unless `flow.dask_address` names a scheduler). Tasks receive the params file's path and
a stage name, never arrays, and return the stage's metrics.

Each task is cached on what `dvc repro` looks at (see `flows/dvc_spec.py`): the content of the
stage's deps from dvc.yaml (code, upstream outputs; stores by their manifests' checksums) and its
params values. A task whose outputs are missing is re-run even on a cache hit. I/O errors are
retried (`flow.retries`); a configuration error fails at once. Stages write atomically and
extraction resumes, so after a failure the next run takes finished stages from the cache and
continues the interrupted one where it stopped.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.futures import wait
from prefect.states import State
from prefect.task_runners import ThreadPoolTaskRunner

from cortexlens.config import Study, load_study
from cortexlens.config.schema import Flow
from cortexlens.errors import CortexLensError
from flows.dvc_spec import StageSpec, load_stage_specs
from flows.fingerprint import outputs_present, stage_fingerprint

RESULTS_DIR = ".prefect/results"  # under the study root: shared storage for a shared study


def is_transient(task_: Any, task_run: Any, state: State) -> bool:
    """Retry I/O failures (a busy disk, a network file system); never a user's configuration error."""
    error = state.result(raise_on_failure=False)
    return isinstance(error, OSError) and not isinstance(error, CortexLensError)


def _cache_key(context: Any, parameters: dict[str, Any]) -> str:
    # Used verbatim as the result file's name: stage and item names are path-safe by validation.
    return f"{parameters['stage']}-{parameters['item'] or 'all'}-{parameters['fingerprint'][:32]}"


def _task_run_name() -> str:
    from prefect.runtime import task_run

    stage, item = task_run.parameters["stage"], task_run.parameters["item"]
    return f"{stage}@{item}" if item else stage


@task(task_run_name=_task_run_name, cache_key_fn=_cache_key, persist_result=True,
      retry_condition_fn=is_transient)
def run_stage(stage: str, item: str | None, params_file: str, fingerprint: str) -> dict[str, Any]:
    """Run `stages.<stage>.run` on the study; `fingerprint` only keys the cache."""
    study = load_study(params_file)
    module = importlib.import_module(f"stages.{stage}")
    started = time.perf_counter()
    metrics = module.run(study, item, progress=False) if item else module.run(study, progress=False)
    get_run_logger().info("%s%s finished in %.1f s", stage, f"@{item}" if item else "",
                          time.perf_counter() - started)
    return metrics


def stage_groups(specs: dict[str, StageSpec]) -> list[list[StageSpec]]:
    """Stages in dvc.yaml order; the items of one matrix stage form a group that runs in parallel."""
    groups: dict[str, list[StageSpec]] = {}
    for spec in specs.values():
        groups.setdefault(spec.name, []).append(spec)
    return list(groups.values())


def make_task_runner(settings: Flow, dask_address: str | None = None) -> Any:
    address = dask_address or settings.dask_address
    if settings.task_runner == "threads" and not dask_address:
        return ThreadPoolTaskRunner(max_workers=settings.max_workers)
    from prefect_dask import DaskTaskRunner

    if address:
        return DaskTaskRunner(address=address)
    # One thread per worker process: torch already uses every core it is given.
    return DaskTaskRunner(cluster_class="distributed.LocalCluster",
                          cluster_kwargs={"n_workers": settings.max_workers, "threads_per_worker": 1,
                                          "processes": True, "dashboard_address": None})


@flow(name="cortexlens-stages")
def run_stages(params_file: str, only: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """Run every stage (or those named in `only`, by stage or `stage@item`) in dependency order."""
    logger = get_run_logger()
    study = load_study(params_file)
    params = study.params.model_dump(mode="json")
    specs = load_stage_specs(params, study.root)
    settings = study.params.flow
    summary: dict[str, dict[str, Any]] = {}
    for group in stage_groups(specs):
        group = [s for s in group if not only or s.name in only or s.full_name in only]
        futures = []
        for spec in group:
            # Fingerprints are taken when the group starts: upstream outputs are final by then.
            fingerprint = stage_fingerprint(spec, params)
            stage_task = run_stage.with_options(
                refresh_cache=not outputs_present(spec),  # deleted outputs: a cache hit would be a lie
                retries=settings.retries, retry_delay_seconds=settings.retry_delay_seconds,
                result_storage=study.root / RESULTS_DIR)
            futures.append((spec, stage_task.submit(spec.name, spec.item, str(study.file), fingerprint)))
        wait([future for _, future in futures])  # let siblings finish (and be cached) even if one fails
        for spec, future in futures:
            state = future.state
            summary[spec.full_name] = {"state": state.name, "metrics": future.result()}
            logger.info("%s: %s", spec.full_name, state.name)
    return summary


@flow(name="cortexlens", log_prints=True)
def pipeline(params: str = "params.yaml", only: list[str] | None = None,
             dask_address: str | None = None) -> dict[str, dict[str, Any]]:
    """Entry point of `python -m flows.pipeline` and of the deployments in prefect.yaml.

    `params` is relative to the working directory (the repository, for a deployment).
    """
    study = load_study(params)  # a bad params file fails here, before any task runs
    runner = make_task_runner(study.params.flow, dask_address)
    if not isinstance(runner, ThreadPoolTaskRunner) and not os.environ.get("PREFECT_API_URL"):
        get_run_logger().warning("Dask workers without PREFECT_API_URL each start a temporary Prefect "
                                 "server; run `prefect server start` and export PREFECT_API_URL")
    return run_stages.with_options(task_runner=runner)(str(study.file), only)


def _print_summary(summary: dict[str, dict[str, Any]], seconds: float) -> None:
    width = max(len(name) for name in summary) if summary else 0
    for name, result in summary.items():
        print(f"  {name:<{width}}  {result['state']}")
    print(f"pipeline finished in {seconds:.1f} s")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Run the CortexLens pipeline as a Prefect flow.")
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--only", nargs="*", help="stage names or stage@item to run (default: all)")
    p.add_argument("--dask", metavar="ADDRESS", help="run tasks on this Dask scheduler")
    args = p.parse_args(argv)
    try:
        study: Study = load_study(args.params)  # fail fast, with the one-line messages, before Prefect starts
    except CortexLensError as err:
        print("\n".join(err.lines), file=sys.stderr)
        sys.exit(err.exit_code)
    started = time.perf_counter()
    try:
        summary = pipeline(params=str(study.file), only=args.only, dask_address=args.dask)
    except CortexLensError as err:
        print("\n".join(err.lines), file=sys.stderr)
        sys.exit(err.exit_code)
    _print_summary(summary, time.perf_counter() - started)


if __name__ == "__main__":
    main()
