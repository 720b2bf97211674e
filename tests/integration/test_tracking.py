"""MLflow tracking of the real stages against a real SQLite tracking store and model registry.

One small study (tiny toy config, 20 built-in documents) runs train_toy, extract and report once per module;
the tests read back what a user would look at: runs, params, metrics, lineage tags, the registered model.
"""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import torch
import yaml
from mlflow import MlflowClient

from cortexlens.config import load_study
from cortexlens.config.schema import TrainToy
from cortexlens.errors import ConfigError, DatasetError
from cortexlens.store import layout
from cortexlens.toy import load_toy
from cortexlens.tracking import stage_run, tracking_uri
from cortexlens.tracking.lineage import PARAM_VALUE_LIMIT, param_values
from stages import extract as extract_stage
from stages import report as report_stage
from stages import train_toy as train_toy_stage

STUDY = "trk"
TINY = TrainToy(d_model=64, n_heads=2, d_mlp=128, n_ctx=24, min_repeat=3, max_repeat=10, steps=30,
                batch_size=16, eval_sequences=32)
QUERIES = Path(__file__).resolve().parents[2] / "reports" / "queries"
TEXTS = ["the dog sleeps . the dog", "a teacher reads the book and the", "zyzzyva"]


def _write_params(directory: Path, **overrides) -> Path:
    params = {
        "study": STUDY,
        "device": "cpu",
        "paths": {"store": "store", "models": "models", "reports": "reports"},
        "models": {"toy": "toy", "minilm": "minilm"},
        "datasets": {"corpus": {"kind": "builtin", "n_docs": 20}},
        "train_toy": TINY.model_dump(),
        "extract": {"models": ["toy", "minilm"], "datasets": ["corpus"], "hooks": ["resid_post"],
                    "layers": [0], "batch_size": 8},
        "report": {"queries": str(QUERIES)},
    }
    params.update(overrides)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return directory / "params.yaml"


def _git(directory: Path, *args: str) -> str:
    cmd = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args]
    return subprocess.run(cmd, cwd=directory, check=True, capture_output=True, text=True).stdout.strip()


def _json_text(value) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def _flat(data: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in data.items():
        if isinstance(value, dict) and value:
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _results(logged: dict) -> dict:
    """MLflow metrics without the timings (`seconds.*`), which only MLflow holds."""
    return {k: v for k, v in logged.items() if not k.startswith("seconds.")}


def _numeric(metrics: dict) -> dict:
    return {k: float(v) for k, v in _flat(metrics).items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """The study in a git repository, run once: train_toy, extract@toy, extract@minilm."""
    directory = tmp_path_factory.mktemp("tracked")
    db = directory / "db" / "mlflow.db"
    db.parent.mkdir()
    params = _write_params(directory, tracking={"uri": f"sqlite:///{db}"})
    _git(directory, "init", "-q")
    _git(directory, "add", "params.yaml")
    _git(directory, "commit", "-q", "-m", "study")
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.delenv("MLFLOW_REGISTRY_URI", raising=False)
        study = load_study(params)
        train_toy_stage.STAGE.execute(study, progress=False)
        for model in ("toy", "minilm"):
            extract_stage.STAGE.execute(study, {"model": model}, progress=False)
        report_stage.STAGE.execute(study, progress=False)
        leaked = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    uri = f"sqlite:///{db}"
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(STUDY)
    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    return {"dir": directory, "study": study, "client": client, "runs": runs, "db": db, "uri": uri,
            "experiment": experiment, "leaked": leaked}


def test_one_finished_run_per_stage_run_in_the_study_experiment(project):
    runs = project["runs"]
    assert sorted(runs) == ["extract@minilm", "extract@toy", "report", "train_toy"]
    assert {r.info.status for r in runs.values()} == {"FINISHED"}
    assert project["experiment"].name == STUDY
    assert runs["extract@toy"].data.tags["cortexlens.stage"] == "extract"
    assert runs["extract@toy"].data.tags["cortexlens.item"] == "toy"
    # Artifacts sit beside the database, not in the working directory.
    assert project["experiment"].artifact_location == (project["db"].parent / "mlruns" / STUDY).as_uri()
    # Model logging set MLflow's process-wide URIs for a moment; they must not leak to the next study.
    assert project["leaked"] == {"MLFLOW_TRACKING_URI": None, "MLFLOW_REGISTRY_URI": None}


def test_params_and_metrics_equal_the_stage_outputs(project):
    study, runs = project["study"], project["runs"]
    train = runs["train_toy"].data
    want = {f"train_toy.{k}": _json_text(v) for k, v in TINY.model_dump(mode="json").items()}
    assert train.params == want | {"device": "cpu"}
    train_metrics = json.loads((study.reports_dir / "metrics" / "train_toy.json").read_text())
    assert _results(train.metrics) == pytest.approx(_numeric(train_metrics))
    assert "second_copy_accuracy" in train.metrics
    # Timings are MLflow metrics only: the metrics file (in git, compared by dvc exp show) has none.
    assert train.metrics["seconds.train"] > 0 and train.metrics["seconds.stage"] >= train.metrics["seconds.train"]
    assert "train_seconds" not in train_metrics and "timings" not in train_metrics

    extract = runs["extract@minilm"].data
    assert extract.params["extract.hooks"] == '["resid_post"]'
    assert extract.params["models.minilm.source"] == "minilm"
    assert extract.params["datasets.corpus.n_docs"] == "20"
    assert "models.toy.source" not in extract.params  # only this run's model
    extract_metrics = json.loads((study.reports_dir / "metrics" / "extract-minilm.json").read_text())
    assert _results(extract.metrics) == pytest.approx(_numeric(extract_metrics))
    assert extract.metrics["seconds.corpus"] > 0
    assert extract.metrics["datasets.corpus.documents"] == 20


def test_lineage_tags_identify_code_params_and_inputs(project):
    study, runs = project["study"], project["runs"]
    tags = runs["train_toy"].data.tags
    assert tags["git.commit"] == _git(project["dir"], "rev-parse", "HEAD")
    assert tags["git.dirty"] == "false"  # outputs are untracked files; params.yaml is committed
    assert tags["params.file"] == str(project["dir"] / "params.yaml")
    canonical = json.dumps({"train_toy": TINY.model_dump(mode="json"), "device": "cpu"},
                           sort_keys=True, separators=(",", ":"))
    assert tags["params.hash"] == hashlib.sha256(canonical.encode()).hexdigest()

    manifest = json.loads((layout.extraction_dir(study.store_dir, "toy", "corpus") / layout.MANIFEST).read_text())
    tags = runs["extract@toy"].data.tags
    assert tags["input.models.toy"] == manifest["model"]["revision"]
    assert tags["input.models.toy"].startswith("sha256:")
    assert tags["input.datasets.corpus"] == manifest["dataset"]["fingerprint"] == "builtin/2:n_docs=20:seed=0"
    assert tags["manifest.corpus"] == manifest["fingerprint"]
    client = project["client"]
    logged = client.download_artifacts(runs["extract@toy"].info.run_id, "manifests/corpus.json")
    assert json.loads(Path(logged).read_text()) == manifest


def test_report_run_logs_the_page_its_plot_data_and_the_extractions_it_read(project):
    study, runs, client = project["study"], project["runs"], project["client"]
    run = runs["report"]
    for model in ("toy", "minilm"):
        manifest = layout.extraction_dir(study.store_dir, model, "corpus") / layout.MANIFEST
        assert run.data.tags[f"input.extract.{model}.corpus"] == json.loads(manifest.read_text())["fingerprint"]
    metrics = json.loads((study.reports_dir / "metrics" / "report.json").read_text())
    assert _results(run.data.metrics) == pytest.approx(_numeric(metrics))
    assert run.data.metrics["figures"] >= 1 and run.data.metrics["seconds.build"] > 0
    page = client.download_artifacts(run.info.run_id, "report/index.html")
    assert Path(page).read_bytes() == (study.reports_dir / "index.html").read_bytes()
    logged = {Path(f.path).name for f in client.list_artifacts(run.info.run_id, "report/plots")}
    assert logged == {p.name for p in (study.reports_dir / "plots").iterdir()} and logged


def test_registered_toy_model_predicts_like_transformers(project, monkeypatch):
    client, runs = project["client"], project["runs"]
    name = f"{STUDY}-toy"
    model = client.get_registered_model(name)
    assert {alias: str(v) for alias, v in model.aliases.items()} == {"current": "1"}
    version = client.get_model_version_by_alias(name, "current")
    assert version.run_id == runs["train_toy"].info.run_id
    assert runs["train_toy"].data.tags["cortexlens.registered_model"] == f"{name}/1"

    hf_model, tokenizer = load_toy(project["study"].models_dir / "toy")
    with torch.no_grad():
        direct = [hf_model(**tokenizer(text, return_tensors="pt")).logits[0, -1].softmax(-1)  # [vocab]
                  for text in TEXTS]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", project["uri"])  # how a user in another process points at it
    for uri in (f"models:/{name}@current", f"models:/{name}@latest"):
        pyfunc = mlflow.pyfunc.load_model(uri)
        frame = pyfunc.predict(pd.DataFrame({"text": TEXTS}))
        assert list(frame.columns) == ["next_token", "token_id", "probability"] and len(frame) == len(TEXTS)
        for row, probs in zip(frame.itertuples(), direct):
            assert row.token_id == int(probs.argmax())
            assert row.next_token == tokenizer.decode([row.token_id])
            assert row.probability == pytest.approx(float(probs.max()), rel=1e-5)
    assert pyfunc.predict(TEXTS[:1]).equals(frame.iloc[:1])  # a plain list of strings works too


def test_a_failing_stage_leaves_a_failed_run(project, tmp_path):
    """extract over a file that vanished after validation: the error propagates, the run is FAILED."""
    (tmp_path / "docs.txt").write_text("one document\n")
    params = _write_params(tmp_path, study=f"{STUDY}-fail", tracking={"uri": f"sqlite:///{project['db']}"},
                           datasets={"docs": {"kind": "text", "path": "docs.txt"}},
                           extract={"models": ["minilm"], "datasets": ["docs"], "hooks": ["resid_post"]})
    study = load_study(params)
    (tmp_path / "docs.txt").unlink()
    with pytest.raises(DatasetError, match="file not found"):
        extract_stage.STAGE.execute(study, {"model": "minilm"}, progress=False)
    client = project["client"]
    experiment = client.get_experiment_by_name(f"{STUDY}-fail")
    [run] = client.search_runs([experiment.experiment_id])
    assert (run.info.run_name, run.info.status) == ("extract@minilm", "FAILED")
    assert run.data.tags["cortexlens.error"].startswith("DatasetError: datasets.docs.path: file not found")
    assert not (tmp_path / "store").exists()


ORPHAN = """
import os, sys
from cortexlens.config import load_study
from cortexlens.tracking import stage_run
with stage_run(load_study(sys.argv[1]), "probe", params={"probe": {"k": 1}}) as run:
    print(run.run_id, flush=True)
    os._exit(9)  # dies like SIGKILL: no finally, no atexit
"""


def test_a_killed_stage_run_is_marked_killed_by_the_next_run_of_that_stage(project, tmp_path):
    params = _write_params(tmp_path, study=f"{STUDY}-orphan", tracking={"uri": f"sqlite:///{project['db']}"})
    died = subprocess.run([sys.executable, "-c", ORPHAN, str(params)], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[2], check=False)
    assert died.returncode == 9, died.stderr[-2000:]
    orphan = died.stdout.split()[-1]
    client = project["client"]
    assert client.get_run(orphan).info.status == "RUNNING"  # nothing could close it
    study = load_study(params)
    with stage_run(study, "other"):  # another stage leaves it alone
        pass
    assert client.get_run(orphan).info.status == "RUNNING"
    with stage_run(study, "probe") as run:
        pass
    closed = client.get_run(orphan)
    assert closed.info.status == "KILLED"
    assert closed.data.tags["cortexlens.error"].endswith("ended without closing the run")
    assert client.get_run(run.run_id).info.status == "FINISHED"


def test_default_database_is_absolute_under_the_params_directory(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    study_dir, elsewhere = tmp_path / "study", tmp_path / "elsewhere"
    elsewhere.mkdir()
    params = _write_params(study_dir)
    monkeypatch.chdir(elsewhere)
    study = load_study(os.path.relpath(params, elsewhere))  # a relative path, as a worker might pass it
    assert tracking_uri(None, study.root) == f"sqlite:///{study_dir.resolve()}/mlflow.db"
    with stage_run(study, "probe", params={"probe": {"k": 1}}) as run:
        run.log_metrics({"score": 0.5})
    assert (study_dir / "mlflow.db").is_file() and (study_dir / "mlruns").is_dir()
    assert list(elsewhere.iterdir()) == []
    client = MlflowClient(tracking_uri=f"sqlite:///{study_dir.resolve()}/mlflow.db")
    [logged] = client.search_runs([client.get_experiment_by_name(STUDY).experiment_id])
    assert logged.info.run_id == run.run_id and logged.data.metrics == {"score": 0.5}
    assert logged.data.params == {"probe.k": "1"}


def test_uri_precedence_setting_then_environment_then_default(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking.example:5000")
    assert tracking_uri("http://other:5000", tmp_path) == "http://other:5000"
    assert tracking_uri(None, tmp_path) == "http://tracking.example:5000"
    # A relative SQLite path in params.yaml is relative to its directory, like every path there.
    assert tracking_uri("sqlite:///runs/m.db", tmp_path) == f"sqlite:///{tmp_path.resolve()}/runs/m.db"


def test_disabled_tracking_writes_no_database(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    quick = TINY.model_copy(update={"steps": 1, "batch_size": 2, "eval_sequences": 2})
    study = load_study(_write_params(tmp_path, tracking={"enabled": False}, train_toy=quick.model_dump()))
    metrics = train_toy_stage.STAGE.execute(study, progress=False)
    assert metrics["second_copy_accuracy"] >= 0
    with stage_run(study, "probe") as run:
        run.log_metrics({"x": 1})
        assert run.run_id is None
    assert not list(tmp_path.rglob("mlflow.db")) and not (tmp_path / "mlruns").exists()


def test_long_params_are_truncated_and_reserved_aliases_refused(tmp_path):
    values = param_values({"a": {"b": "x" * (PARAM_VALUE_LIMIT + 10), "c": [1, 2], "d": None, "e": True}})
    assert len(values["a.b"]) == PARAM_VALUE_LIMIT and values["a.b"].endswith("...")
    assert (values["a.c"], values["a.d"], values["a.e"]) == ("[1,2]", "null", "true")
    with pytest.raises(ConfigError, match=r"tracking.alias: 'latest' is reserved by MLflow"):
        load_study(_write_params(tmp_path, tracking={"alias": "latest"}))


DEMO_STUDY = "CORTEXLENS_STUDY"


@pytest.mark.skipif(not os.environ.get(DEMO_STUDY), reason=f"set {DEMO_STUDY}=<directory of params.yaml> after make demo")
def test_demo_database_has_a_run_per_stage_and_a_loadable_model(monkeypatch):
    """The study `make demo` ran (.ci/run sets CORTEXLENS_STUDY after the demo): its MLflow database."""
    study = load_study(Path(os.environ[DEMO_STUDY]) / "params.yaml")
    uri = tracking_uri(study.params.tracking.uri, study.root)
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(study.params.study)
    assert experiment is not None, f"no experiment {study.params.study!r} in {uri}"
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time DESC"])
    newest, children = {}, {}
    for run in runs:
        # Nested runs (train_sae's one per SAE) belong to their stage's run, not to dvc.yaml's stages.
        parent = run.data.tags.get("mlflow.parentRunId")
        (children.setdefault(parent, {}) if parent else newest).setdefault(run.info.run_name, run)
    # Every stage instance dvc.yaml declares for this study ran and finished.
    from cortexlens.pipeline.dvcfile import load_stage_specs

    stages = set(load_stage_specs(study.params.model_dump(mode="json"), study.root,
                                  Path(__file__).resolve().parents[2] / "dvc.yaml"))
    assert {"train_toy", "extract@minilm", "probe@toy", "sparsity@minilm", "report"} <= stages
    assert set(newest) == stages
    assert {name: run.info.status for name, run in newest.items()} == dict.fromkeys(stages, "FINISHED")
    if "train_sae" in newest:  # one finished child run per SAE of train_sae.saes
        saes = {f"train_sae/{spec.name}" for spec in study.params.train_sae.saes}
        sae_runs = children.get(newest["train_sae"].info.run_id, {})
        assert {name: run.info.status for name, run in sae_runs.items()} == dict.fromkeys(saes, "FINISHED")
    name, alias = f"{study.params.study}-toy", study.params.tracking.alias
    version = client.get_model_version_by_alias(name, alias)
    assert version.run_id == newest["train_toy"].info.run_id
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)  # as a user in another process points at it
    model = mlflow.pyfunc.load_model(f"models:/{name}@{alias}")
    words = "river quiet teacher garden music"
    predicted = model.predict([f"{words} {words.rsplit(' ', 1)[0]}"])  # the repeat stops before "music"
    print(predicted)
    assert predicted.next_token[0].strip() == "music" and predicted.probability[0] > 0.5
