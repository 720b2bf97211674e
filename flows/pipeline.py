"""The pipeline as a Prefect flow: the same stage functions as `dvc repro`, run as a task graph.

    python -m flows.pipeline --params params.yaml          # threads (default) or flow.task_runner
    python -m flows.pipeline --params params.yaml --dask tcp://scheduler:8786

Tasks and their order come from dvc.yaml (`cortexlens.pipeline`): a stage instance waits for the
instances whose outputs its deps read, and starts as soon as they have finished, so independent
stages run at the same time (`extract@minilm` beside `train_toy`) through the task runner: threads
by default, a Dask cluster with `flow.task_runner: dask`. Tasks receive the params file's path and a
stage name, never arrays, and return the stage's metrics.

Each task is cached on what `dvc repro` looks at (`cortexlens.pipeline.fingerprint`): the content of
the stage's deps (code, upstream outputs; stores by their manifests' checksums) and its params
values, taken when the task is submitted (its upstream outputs are final by then). A task whose
outputs are missing is re-run even on a cache hit. I/O errors are retried (`flow.retries`); a
configuration error fails at once; the stages downstream of a failed one are not run. Stages write
atomically and resume, so the next run takes finished stages from the cache and continues the
interrupted one where it stopped.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.futures import PrefectFuture, as_completed
from prefect.states import State
from prefect.task_runners import ThreadPoolTaskRunner

from cortexlens.config import Study, load_study
from cortexlens.config.schema import Flow
from cortexlens.errors import CortexLensError
from cortexlens.pipeline.dvcfile import StageSpec, load_stage_specs
from cortexlens.pipeline.fingerprint import outputs_present, stage_fingerprint
from cortexlens.pipeline.graph import dependencies, downstream_of, execution_order

REPO_ROOT = Path(__file__).resolve().parents[1]
DVC_YAML = REPO_ROOT / "dvc.yaml"
RESULTS_DIR = ".prefect/results"  # under the study root: shared storage for a shared study
NOT_RUN = "NotRun"  # the state reported for stages skipped because an upstream stage failed


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
    """`stages.<stage>.STAGE.execute` on the study; `fingerprint` only keys the cache."""
    study = load_study(params_file)
    started = time.perf_counter()
    metrics = stage_module(stage).STAGE.execute(study, item, progress=False)
    get_run_logger().info("%s%s finished in %.1f s", stage, f"@{item}" if item else "",
                          time.perf_counter() - started)
    return metrics


def stage_module(stage: str) -> Any:
    return importlib.import_module(f"stages.{stage}")


def plan(study: Study) -> tuple[dict[str, StageSpec], dict[str, set[str]]]:
    """dvc.yaml's stage instances (each refined by its stage, e.g. extract@minilm without the toy
    model's directory) and what each waits for."""
    specs = load_stage_specs(study.params.model_dump(mode="json"), study.root, DVC_YAML)
    refined = {}
    for name, spec in specs.items():
        refine = stage_module(spec.name).STAGE.refine
        refined[name] = refine(spec, study) if refine else spec
    return refined, dependencies(refined)


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


def selected(needs: dict[str, set[str]], specs: dict[str, StageSpec], only: list[str] | None) -> list[str]:
    """Stage instances to run, in a valid order: all, or those named in `only` (stage or stage@item)."""
    order = execution_order(needs)
    if not only:
        return order
    unknown = [name for name in only if name not in specs and all(s.name != name for s in specs.values())]
    if unknown:
        raise CortexLensError(f"--only: unknown stage(s) {', '.join(unknown)} (stages: {', '.join(order)})")
    return [name for name in order if name in only or specs[name].name in only]


@flow(name="cortexlens-stages")
def run_stages(params_file: str, only: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """Run the stage graph: each instance as soon as the instances it depends on have finished."""
    logger = get_run_logger()
    study = load_study(params_file)
    params = study.params.model_dump(mode="json")
    specs, needs = plan(study)
    todo = selected(needs, specs, only)
    wanted = set(todo)
    settings = study.params.flow
    running: dict[str, PrefectFuture] = {}
    finished: dict[str, str] = {}  # name -> final state name
    futures: dict[str, PrefectFuture] = {}
    while todo or running:
        ready = [n for n in todo if (needs[n] & wanted) <= finished.keys()]
        for name in ready:
            todo.remove(name)
            if any(finished[parent] not in ("Completed", "Cached") for parent in needs[name] & wanted):
                finished[name] = NOT_RUN
                continue
            running[name] = futures[name] = _submit(specs[name], params, study, settings)
        if not running:
            assert ready or not todo, "execution_order guarantees a ready stage"
            continue
        done = next(as_completed(list(running.values())))
        done.wait()  # records the final state on the future (as_completed may yield it before)
        name = next(n for n, f in running.items() if f is done)
        del running[name]
        finished[name] = done.state.name
        logger.info("%s: %s", name, done.state.name)
        if not done.state.is_completed():
            skipped = downstream_of(needs, name) & set(todo)
            if skipped:
                logger.warning("%s failed: not running %s", name, ", ".join(sorted(skipped)))
    summary = {name: _outcome(finished[name], futures.get(name)) for name in finished}
    for future in futures.values():
        future.result()  # re-raise the first failure: the flow run fails like the stage did
    return summary


def _submit(spec: StageSpec, params: dict[str, Any], study: Study, settings: Flow) -> PrefectFuture:
    # Fingerprints are taken now, when everything upstream has finished: its outputs are final.
    fingerprint = stage_fingerprint(spec, params, study.root)
    stage_task = run_stage.with_options(
        refresh_cache=not outputs_present(spec),  # deleted outputs: a cache hit would be a lie
        retries=settings.retries, retry_delay_seconds=settings.retry_delay_seconds,
        result_storage=study.root / RESULTS_DIR)
    return stage_task.submit(spec.name, spec.item, str(study.file), fingerprint)


def _outcome(state: str, future: PrefectFuture | None) -> dict[str, Any]:
    """State, metrics and the task run's start and end times (as the Prefect API recorded them)."""
    if future is None:
        return {"state": state, "metrics": None, "start": None, "end": None}
    metrics = future.result(raise_on_failure=False) if state in ("Completed", "Cached") else None
    task_run = _task_run(future.task_run_id)
    start = task_run.start_time if task_run is not None else None
    end = task_run.end_time if task_run is not None else None
    return {"state": state, "metrics": metrics, "start": start.timestamp() if start else None,
            "end": end.timestamp() if end else None}


def _task_run(task_run_id: Any, attempts: int = 10) -> Any:
    """The task run from the API once it records a final state; None if it never shows (task runs
    reach the server as events, a moment after the task ends)."""
    from prefect import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        for attempt in range(attempts):
            try:
                task_run = client.read_task_run(task_run_id)
                if (task_run.state is not None and task_run.state.is_final()) or attempt == attempts - 1:
                    return task_run
            except ObjectNotFound:
                pass
            time.sleep(0.5)
    return None


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


def print_summary(summary: dict[str, dict[str, Any]], seconds: float) -> None:
    """One line per stage instance: state, start (seconds after the first task started) and duration;
    then the flow's wall time against the sum of its tasks' times (below it when tasks overlapped)."""
    starts = [r["start"] for r in summary.values() if r["start"] is not None]
    origin = min(starts) if starts else 0.0
    width = max((len(name) for name in summary), default=0)
    total = 0.0
    for name, result in summary.items():
        line = f"  {name:<{width}}  {result['state']}"
        if result["start"] is not None and result["end"] is not None:
            ran = result["end"] - result["start"]
            total += ran
            line += f"  started +{result['start'] - origin:.1f} s, ran {ran:.1f} s"
        print(line)
    print(f"pipeline finished in {seconds:.1f} s; its tasks ran {total:.1f} s in total")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Run the CortexLens pipeline as a Prefect flow.")
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--only", nargs="*", help="stage names or stage@item to run (default: all)")
    p.add_argument("--dask", metavar="ADDRESS", help="run tasks on this Dask scheduler")
    args = p.parse_args(argv)
    try:
        study: Study = load_study(args.params)  # fail fast, with the one-line messages, before Prefect starts
        specs, needs = plan(study)
        selected(needs, specs, args.only)  # an unknown --only name fails here too
    except CortexLensError as err:
        print("\n".join(err.lines), file=sys.stderr)
        sys.exit(err.exit_code)
    started = time.perf_counter()
    try:
        summary = pipeline(params=str(study.file), only=args.only, dask_address=args.dask)
    except CortexLensError as err:
        print("\n".join(err.lines), file=sys.stderr)
        sys.exit(err.exit_code)
    print_summary(summary, time.perf_counter() - started)


if __name__ == "__main__":
    main()
