"""Loopback deployment, as the README's lab set-up: a Prefect server and an MLflow server, both with
their built-in authentication on; a process work pool, `prefect deploy` from prefect.yaml, a worker,
a triggered run to COMPLETED, the outputs and the MLflow runs checked, requests without credentials
refused, then the worker stopped before the servers."""

import json
import os
import signal
import subprocess
import sys

import pytest

from cortexlens.store.sql import connect
from tests.integration.prefect_support import (
    BIN,
    ROOT,
    http_status,
    make_project,
    small_params,
    start_mlflow_server,
    stop,
)

pytestmark = pytest.mark.timeout(600)

RUN_DEPLOYMENT = """
import json, sys
from prefect.deployments import run_deployment
run = run_deployment(sys.argv[1], parameters={"params": sys.argv[2]}, timeout=float(sys.argv[3]))
print(json.dumps({"state": run.state.type.value, "name": run.state.name}))
"""


def _prefect(server, *args: str, cwd=ROOT, timeout: float = 120) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(BIN / "prefect"), "--no-prompt", *args], cwd=cwd, env={**server.env, "PWD": str(cwd)},
                          capture_output=True, text=True, timeout=timeout, check=False)
    assert proc.returncode == 0, f"prefect {' '.join(args)}:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    return proc


def test_both_servers_refuse_requests_without_credentials(prefect_server, mlflow_server):
    flows = f"{prefect_server.url}/flows/filter"
    assert http_status(flows, b"{}") == 401
    assert http_status(flows, b"{}", auth="cortexlens:wrong") == 401
    assert http_status(flows, b"{}", auth=prefect_server.auth) == 200
    experiments = f"{mlflow_server.url}/api/2.0/mlflow/experiments/search?max_results=1"
    creds = f"{mlflow_server.env['MLFLOW_TRACKING_USERNAME']}:{mlflow_server.env['MLFLOW_TRACKING_PASSWORD']}"
    assert http_status(experiments) == 401
    assert http_status(experiments, auth="admin:wrong") == 401
    assert http_status(experiments, auth=creds) == 200


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    proc, server = start_mlflow_server(tmp_path_factory.mktemp("mlflow-home"))
    yield server
    stop(proc)


def test_a_worker_runs_the_deployed_flow(prefect_server, mlflow_server, tmp_path):
    pool = "cortexlens"  # the pool prefect.yaml names; the server is private to this test session
    base = small_params()
    params = make_project(tmp_path / "study", small_params(extract={**base["extract"], "models": ["toy"], "model_datasets": {}},
                                                           sparsity={**base["sparsity"], "models": ["toy"]},
                                                           brain={"models": []},
                                                           tracking={"uri": mlflow_server.url}))
    _prefect(prefect_server, "work-pool", "create", pool, "--type", "process")
    _prefect(prefect_server, "deploy", "--name", "study")  # reads prefect.yaml in the repository root
    worker_log = (tmp_path / "worker.log").open("w")
    worker = subprocess.Popen(
        [str(BIN / "prefect"), "worker", "start", "--pool", pool, "--limit", "1"], cwd=ROOT,
        env={**prefect_server.env, **mlflow_server.env, "PREFECT_WORKER_QUERY_SECONDS": "1"},
        stdout=worker_log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        proc = subprocess.run([sys.executable, "-c", RUN_DEPLOYMENT, "cortexlens/study", str(params), "420"],
                              cwd=tmp_path, env=prefect_server.env, capture_output=True, text=True, timeout=480,
                              check=False)
        log = (tmp_path / "worker.log").read_text()
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert json.loads(proc.stdout.strip().splitlines()[-1])["state"] == "COMPLETED", log[-4000:]
    finally:
        # Worker first: a worker killed together with its server hangs on SIGTERM.
        os.killpg(worker.pid, signal.SIGINT)
        try:
            worker.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
    con = connect(tmp_path / "study" / "data" / "store")
    assert con.execute("select count(*) from activations where model = 'toy'").fetchone()[0] > 0
    assert (tmp_path / "study" / "data" / "models" / "toy" / "model.safetensors").is_file()
    assert worker.returncode is not None
    # The worker's stages recorded their runs in the authenticated MLflow server.
    from mlflow.tracking import MlflowClient

    os.environ.update(mlflow_server.env)
    try:
        client = MlflowClient(tracking_uri=mlflow_server.url)
        experiment = client.get_experiment_by_name("flowtest")
        runs = client.search_runs([experiment.experiment_id])
    finally:
        for key in mlflow_server.env:
            os.environ.pop(key, None)
    assert {"train_toy", "extract@toy", "report"} <= {r.info.run_name for r in runs}
    assert {r.info.status for r in runs} == {"FINISHED"}
