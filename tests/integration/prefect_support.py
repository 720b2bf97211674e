"""Shared by the flow tests: a real Prefect server on 127.0.0.1, small study projects, table dumps."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import yaml

from cortexlens.store.sql import connect

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


@dataclass
class PrefectServer:
    url: str
    env: dict[str, str]  # environment for clients: PREFECT_API_URL, its credentials, a private PREFECT_HOME
    log: Path
    auth: str  # "user:password": the server refuses API requests without it (PREFECT_SERVER_API_AUTH_STRING)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(home: Path, timeout: float = 150.0) -> tuple[subprocess.Popen, PrefectServer]:
    """`prefect server start` on 127.0.0.1 with its built-in authentication on, as the README's lab set-up."""
    port = free_port()
    auth = f"cortexlens:{secrets.token_urlsafe(16)}"
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "DO_NOT_TRACK": "1", "PREFECT_LOGGING_LEVEL": "INFO"}
    env.pop("PREFECT_API_URL", None)
    log = home / "server.log"
    proc = subprocess.Popen([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                            env={**env, "PREFECT_SERVER_API_AUTH_STRING": auth},
                            stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"prefect server exited early:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    client_env = {**env, "PREFECT_API_URL": url, "PREFECT_API_AUTH_STRING": auth}
                    return proc, PrefectServer(url, client_env, log, auth)
        except OSError:
            time.sleep(0.5)
    stop(proc)
    raise RuntimeError(f"prefect server not healthy after {timeout} s:\n{log.read_text()[-3000:]}")


def stop(proc: subprocess.Popen, timeout: float = 30.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def small_params(**overrides) -> dict:
    params = {
        "study": "flowtest",
        # dvc.yaml interpolates these, and DVC does not know the schema defaults: spell them out.
        "paths": {"store": "data/store", "models": "data/models", "reports": "reports"},
        "device": "auto",
        "report": {"queries": "reports/queries"},
        "models": {"minilm": "minilm", "toy": "toy", "toy_random": {"source": "toy", "init": "random"}},
        "datasets": {"corpus": {"kind": "builtin", "n_docs": 24},
                     "stim": {"kind": "passages", "n_passages": 6, "sentences_per_passage": 4}},
        "train_toy": {"d_model": 64, "n_heads": 2, "d_mlp": 128, "n_ctx": 24, "min_repeat": 3, "max_repeat": 10,
                      "steps": 30, "batch_size": 16, "eval_sequences": 32},
        "train_facts": {"n_layers": 1, "d_model": 32, "d_mlp": 32, "n_ctx": 16, "steps": 10, "batch_size": 8,
                        "n_subjects": 4, "n_unseen": 1, "corpus_docs": 20},
        "extract": {"models": ["minilm", "toy", "toy_random"], "datasets": ["corpus", "stim"],
                    "model_datasets": {"minilm": ["corpus"], "toy_random": ["stim"]},
                    "hooks": ["resid_post", "mlp_post"], "layers": [0, -1], "batch_size": 8, "shard_rows": 64},
        # dvc.yaml's analysis stages interpolate their sections (a matrix over `[]` runs nothing): the
        # probes have their own tests (tests/unit/test_probes.py), sparsity runs here.
        "probe": {"models": []},
        "patch": {"models": []},
        "train_sae": {"saes": []},  # the SAEs have their own tests (tests/unit/test_train_sae_stage.py)
        "sparsity": {"models": ["minilm", "toy"], "sample_tokens": 256, "eval_docs": 16, "sweep": [0.0, 0.2],
                     "topk": [0.25]},
        # the toy against a simulated subject, with its random-init control (toy_random)
        "brain": {"models": ["toy"], "folds": 3, "n_permutations": 9, "n_jobs": 1,
                  "subjects": [{"kind": "simulated", "dataset": "stim", "rois": {
                      "r1": {"drivers": {"semantic": 1.0}, "noise": 1.0, "n_neuroids": 8}}}]},
    }
    params.update(overrides)
    return params


def make_project(directory: Path, params: dict, with_code: bool = False) -> Path:
    """A study directory: params.yaml and report queries; with_code adds what `dvc repro` needs."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    if (ROOT / "reports" / "queries").is_dir():
        shutil.copytree(ROOT / "reports" / "queries", directory / "reports" / "queries")
    if with_code:
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
        for name in ("cortexlens", "stages"):
            shutil.copytree(ROOT / name, directory / name, ignore=ignore)
        shutil.copy(ROOT / "dvc.yaml", directory / "dvc.yaml")
    return directory / "params.yaml"


def run_flow(server: PrefectServer, params: Path, *args: str, prelude: str = "",
             env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """`python -m flows.pipeline --params ...` from the repository root (`prelude` runs first)."""
    code = f"{prelude}\nfrom flows.pipeline import main\nmain({['--params', str(params), *args]!r})"
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**server.env, **(env or {})},
                          capture_output=True, text=True, timeout=timeout, check=False)


def states(output: str) -> dict[str, str]:
    """The summary `main` prints: '  <stage>  <state>[  started +x s, ran y s]' lines."""
    found = {}
    for line in output.splitlines():
        parts = line.split()
        if len(parts) >= 2 and line.startswith("  ") and parts[1] in {"Completed", "Cached", "Failed", "NotRun"}:
            found[parts[0]] = parts[1]
    return found


def task_times(output: str) -> dict[str, tuple[float, float]]:
    """From the summary lines: stage -> (start, seconds), as the Prefect API recorded the task runs."""
    found = {}
    for line in output.splitlines():
        match = re.match(r"^  (\S+)\s+\S+\s+started \+([\d.]+) s, ran ([\d.]+) s$", line)
        if match:
            found[match.group(1)] = (float(match.group(2)), float(match.group(3)))
    return found


def tables(project: Path) -> dict[str, list[tuple]]:
    """Every row of every view of the project's store, in a canonical order."""
    con = connect(project / "data" / "store")
    return {view: con.execute(f"select * exclude (labels) from {view} order by all").fetchall()
            if view == "documents" else con.execute(f"select * from {view} order by all").fetchall()
            for view in ("documents", "tokens", "activations", "pooled", "brain_layers")}


def metrics(project: Path) -> dict[str, dict]:
    import json

    out = {}
    for path in sorted((project / "reports" / "metrics").glob("*.json")):
        data = json.loads(path.read_text())
        out[path.name] = data  # no timings in metrics files: they go to MLflow
    return out


def assert_tables_close(ours: dict[str, list[tuple]], theirs: dict[str, list[tuple]], atol: float) -> float:
    """Equal keys and non-float columns; floats and float vectors within `atol`. Returns the largest difference.

    Runs with a different number of torch threads per process (Dask workers get one) reduce in a
    different order, so their floats may differ in the last bits.
    """
    import numpy as np

    largest = 0.0
    assert ours.keys() == theirs.keys()
    for view, rows in ours.items():
        assert len(rows) == len(theirs[view]), view
        for row_a, row_b in zip(rows, theirs[view], strict=True):
            for a, b in zip(row_a, row_b, strict=True):
                if isinstance(a, list) and a and isinstance(a[0], float):
                    diff = float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
                    largest = max(largest, diff)
                    assert diff <= atol, (view, row_a[:6], diff)
                elif isinstance(a, float) and isinstance(b, float):  # result tables' scalar floats
                    largest = max(largest, abs(a - b))
                    assert abs(a - b) <= atol, (view, row_a[:6], a, b)
                else:
                    assert a == b, (view, row_a[:6])
    return largest


@dataclass
class MlflowServer:
    url: str
    env: dict[str, str]  # MLFLOW_TRACKING_USERNAME / _PASSWORD: what a worker needs to record runs


def start_mlflow_server(home: Path, timeout: float = 240.0) -> tuple[subprocess.Popen, MlflowServer]:
    """`mlflow server --app-name basic-auth` on 127.0.0.1, as the README's lab set-up (one worker process)."""
    port = free_port()
    password = secrets.token_urlsafe(16)
    config = home / "basic_auth.ini"
    config.write_text("[mlflow]\ndefault_permission = READ\n"
                      f"database_uri = sqlite:///{home / 'basic_auth.db'}\nadmin_username = admin\n"
                      "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n")
    env = {**os.environ, "MLFLOW_AUTH_CONFIG_PATH": str(config), "MLFLOW_AUTH_ADMIN_PASSWORD": password,
           "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(16), "MLFLOW_DISABLE_TELEMETRY": "true",
           # MLflow 3's job runner (seven huey consumer processes) serves GenAI jobs the pipeline never submits.
           "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    log = home / "mlflow.log"
    proc = subprocess.Popen([str(BIN / "mlflow"), "server", "--app-name", "basic-auth", "--host", "127.0.0.1",
                             "--port", str(port), "--workers", "1",
                             "--backend-store-uri", f"sqlite:///{home / 'mlflow.db'}",
                             "--artifacts-destination", str(home / "artifacts")],
                            env=env, cwd=home, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow server exited early:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    creds = {"MLFLOW_TRACKING_USERNAME": "admin", "MLFLOW_TRACKING_PASSWORD": password}
                    return proc, MlflowServer(url, creds)
        except OSError:
            time.sleep(0.5)
    stop(proc)
    raise RuntimeError(f"mlflow server not healthy after {timeout} s:\n{log.read_text()[-3000:]}")


def http_status(url: str, data: bytes | None = None, auth: str | None = None) -> int:
    """The HTTP status of a request (with Basic credentials "user:password" when given)."""
    import base64
    import urllib.error

    headers = {"Content-Type": "application/json"}
    if auth is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(auth.encode()).decode()
    request = urllib.request.Request(url, data=data, headers=headers, method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code
