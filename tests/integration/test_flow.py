"""The Prefect flow against `dvc repro`: same tables, cached re-runs, Dask fan-out, failure and resume.

Every flow runs as `python -m flows.pipeline` in a subprocess against a real Prefect server.
"""

import os
import shutil
import subprocess
import time

import pytest
import yaml

from cortexlens.store import layout
from cortexlens.store.sql import connect
from tests.integration.prefect_support import (
    BIN,
    assert_tables_close,
    make_project,
    metrics,
    run_flow,
    small_params,
    states,
    tables,
    task_times,
)

pytestmark = pytest.mark.timeout(900)
# The main flow project, the DVC run and the worker test record to MLflow; the Dask and failure
# projects do not, so each does not pay for migrating a fresh MLflow database (~4 s).
UNTRACKED = {"enabled": False}


@pytest.fixture(scope="module")
def flow_project(prefect_server, tmp_path_factory):
    """A small study run once through the flow (thread runner); (directory, seconds, output)."""
    directory = tmp_path_factory.mktemp("flow")
    params = make_project(directory, small_params())
    started = time.perf_counter()
    proc = run_flow(prefect_server, params)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return directory, time.perf_counter() - started, proc.stdout


def test_flow_runs_every_dvc_stage(flow_project):
    directory, _, output = flow_project
    found = states(output)
    assert {"train_toy", "extract@minilm", "extract@toy"} <= set(found), output
    assert set(found.values()) == {"Completed"}, output
    assert (directory / "data" / "models" / "toy" / "model.safetensors").is_file()


def test_independent_stages_run_at_the_same_time(flow_project):
    """The graph from dvc.yaml: extract@minilm needs nothing train_toy writes, extract@toy reads the toy."""
    _, _, output = flow_project
    times = task_times(output)
    (toy_start, toy_ran), (minilm_start, minilm_ran) = times["train_toy"], times["extract@minilm"]
    assert minilm_start < toy_start + toy_ran and toy_start < minilm_start + minilm_ran, output
    assert times["extract@toy"][0] >= toy_start + toy_ran - 0.1, output
    upstream_end = max(start + ran for name, (start, ran) in times.items() if name != "report")
    assert times["report"][0] >= upstream_end - 0.1, output


def _dvc_repro(directory):
    """`dvc repro` in a fresh study directory holding the code, dvc.yaml and the small params."""
    dvc_dir = make_project(directory, small_params(), with_code=True).parent
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1"}
    subprocess.run([str(BIN / "dvc"), "init", "--no-scm", "-q"], cwd=dvc_dir, env=env, check=True)
    proc = subprocess.run([str(BIN / "dvc"), "repro"], cwd=dvc_dir, env=env, capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return dvc_dir


@pytest.fixture(scope="module")
def dvc_project(tmp_path_factory):
    return _dvc_repro(tmp_path_factory.mktemp("dvc") / "study")


def test_dvc_repro_and_the_flow_write_the_same_tables(flow_project, dvc_project):
    flow_dir, _, _ = flow_project
    ours, theirs = tables(flow_dir), tables(dvc_project)
    assert all(len(rows) > 0 for rows in ours.values())
    # Equal keys and non-float values; floats within 1e-5: the flow runs independent stages at the same
    # time, and BLAS may then split a product differently than in a stage running alone.
    largest = assert_tables_close(ours, theirs, atol=1e-5)
    print(f"largest float difference, dvc repro vs the flow: {largest:.2e}")
    assert metrics(flow_dir) == metrics(dvc_project)
    weights = "data/models/toy/model.safetensors"
    assert (flow_dir / weights).read_bytes() == (dvc_project / weights).read_bytes()


@pytest.mark.slow  # a third full study: ~1-3 min; CI runs it (pytest -m slow)
def test_dvc_repro_in_another_fresh_directory_writes_the_same_dvc_lock(dvc_project, tmp_path):
    """What lets a study commit dvc.lock and its metrics: the same params and code give the same bytes in
    every output, wherever the clone is (no timings, no absolute paths, no run-to-run float noise)."""
    again = _dvc_repro(tmp_path / "elsewhere" / "study")
    ours = yaml.safe_load((dvc_project / "dvc.lock").read_text())["stages"]
    theirs = yaml.safe_load((again / "dvc.lock").read_text())["stages"]
    assert ours.keys() == theirs.keys()
    differ = [f"{stage}: {out['path']}" for stage in ours for out, other in
              zip(ours[stage].get("outs", []), theirs[stage].get("outs", []), strict=True) if out != other]
    assert differ == []
    assert (dvc_project / "dvc.lock").read_text() == (again / "dvc.lock").read_text()
    assert metrics(dvc_project) == metrics(again)


def test_second_run_takes_every_task_from_the_cache_and_rebuilds_deleted_outputs(prefect_server, flow_project):
    directory, first_seconds, _ = flow_project
    params = directory / "params.yaml"
    started = time.perf_counter()
    proc = run_flow(prefect_server, params)
    seconds = time.perf_counter() - started
    assert proc.returncode == 0, proc.stderr[-4000:]
    found = states(proc.stdout)
    assert found and set(found.values()) == {"Cached"}, proc.stdout
    print(f"first run {first_seconds:.1f} s, cached re-run {seconds:.1f} s")

    # A cached result whose outputs were deleted is not trusted: the stage runs again, the rest stays cached.
    # The rebuilt store is byte-identical (its manifests hold no timings), so the stages that read it keep
    # their cache keys and stay cached too, as `dvc repro` would skip them.
    before = tables(directory)
    shutil.rmtree(layout.model_dir(directory / "data" / "store", "toy"))
    proc = run_flow(prefect_server, params)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert states(proc.stdout) == {"train_toy": "Cached", "train_facts": "Cached", "extract@minilm": "Cached",
                                   "extract@toy": "Completed",
                                   "sparsity@minilm": "Cached", "sparsity@toy": "Cached",
                                   "extract@toy_random": "Cached", "brain@toy": "Cached", "train_sae": "Cached",
                                   **_report_state(proc.stdout)}, proc.stdout
    assert_tables_close(tables(directory), before, atol=1e-5)


@pytest.mark.slow  # a Dask cluster and a fourth study: ~1 min; CI runs it
def test_dask_local_cluster_gives_the_same_tables(prefect_server, flow_project, tmp_path):
    flow_dir, _, _ = flow_project
    params = make_project(tmp_path, small_params(flow={"task_runner": "dask", "max_workers": 2}, tracking=UNTRACKED))
    proc = run_flow(prefect_server, params)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "DaskTaskRunner" in proc.stderr or "dask" in proc.stderr.lower(), proc.stderr[-2000:]
    assert set(states(proc.stdout).values()) == {"Completed"}, proc.stdout
    largest = assert_tables_close(tables(tmp_path), tables(flow_dir), atol=1e-5)
    print(f"largest difference from the thread runner: {largest:.2e}")


# Fail the toy's extraction after its first shard is committed: a crash mid-stage.
FAULT = """
import cortexlens.extraction.runner as runner
_close = runner._close
def _close_then_fail(book, writer, *args):
    _close(book, writer, *args)
    if writer.shard == 0 and 'model=toy' in str(book.out_dir):
        raise RuntimeError('injected failure after shard 0')
runner._close = _close_then_fail
"""


def test_failed_stage_leaves_nothing_visible_and_the_next_run_resumes(prefect_server, flow_project, tmp_path):
    flow_dir, _, _ = flow_project
    params = make_project(tmp_path, small_params(flow={"retries": 0}, tracking=UNTRACKED))
    failed = run_flow(prefect_server, params, prelude=FAULT)
    assert failed.returncode != 0
    assert "injected failure after shard 0" in failed.stderr
    toy_dir = layout.extraction_dir(tmp_path / "data" / "store", "toy", "corpus")
    assert not (toy_dir / layout.MANIFEST).exists()
    shard0 = sorted(toy_dir.rglob("part-00000.parquet"))
    assert shard0, "the first shard was committed before the failure"
    stamps = {p: p.stat().st_mtime_ns for p in shard0}
    con = connect(tmp_path / "data" / "store")  # the half-done extraction is invisible to SQL
    assert con.execute("select count(*) from activations where model = 'toy'").fetchone()[0] == 0
    assert con.execute("select count(*) from activations where model = 'minilm'").fetchone()[0] > 0

    resumed = run_flow(prefect_server, params)
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    found = states(resumed.stdout)
    # extract@toy_random ran beside the failing extract@toy: finished (Cached now) or cut short (Completed now)
    assert found.pop("extract@toy_random") in ("Cached", "Completed"), resumed.stdout
    assert found == {"train_toy": "Cached", "train_facts": "Cached", "extract@minilm": "Cached", "sparsity@minilm": "Cached",
                     "extract@toy": "Completed", "sparsity@toy": "Completed", "brain@toy": "Completed",
                     "train_sae": "Completed", **_report_state(resumed.stdout)}, resumed.stdout
    assert {p: p.stat().st_mtime_ns for p in shard0} == stamps  # kept, not redone
    assert_tables_close(tables(tmp_path), tables(flow_dir), atol=1e-5)


def _report_state(output: str) -> dict[str, str]:
    found = states(output)
    return {"report": found["report"]} if "report" in found else {}
