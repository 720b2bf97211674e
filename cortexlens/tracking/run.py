"""One MLflow run per stage run: `with stage_run(study, "extract", "minilm", params) as run: ...`.

Runs are written through an `MlflowClient` bound to the study's URIs, not through MLflow's fluent
API: the fluent API keeps the tracking URI and the experiment in process globals (and exports the URI
to os.environ), which concurrent stages of a Prefect flow, or two studies in one process, would share.
"""

from __future__ import annotations

import getpass
import os
import socket
import threading
import time
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cortexlens
from cortexlens.errors import CortexLensError
from cortexlens.tracking.lineage import (
    TAG_VALUE_LIMIT,
    git_state,
    numeric_metrics,
    param_values,
    params_hash,
    truncate,
)
from cortexlens.tracking.uris import local_sqlite_file, registry_uri, tracking_uri

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from cortexlens.config import Study

BATCH = 100  # MLflow accepts at most 100 params or tags per log_batch call
_URI_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
_BARS = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
_FLUENT = threading.Lock()
TAG_HOST, TAG_PID = "cortexlens.host", "cortexlens.pid"  # which process owns a RUNNING run


class TrackingError(CortexLensError):
    """The tracking database or server could not be used."""


@dataclass(frozen=True)
class Target:
    """Where a study's runs and models go."""

    tracking_uri: str
    registry_uri: str
    experiment: str

    @classmethod
    def of(cls, study: Study) -> Target:
        settings = study.params.tracking
        uri = tracking_uri(settings.uri, study.root)
        return cls(uri, registry_uri(settings.registry_uri, uri, study.root), study.params.study)

    def client(self) -> MlflowClient:
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.registry_uri)


class NullRun:
    """What `stage_run` yields when tracking is disabled: the same methods, doing nothing."""

    run_id: str | None = None

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Nested params under dotted keys, values as strings."""

    def log_metrics(self, metrics: Mapping[str, Any], step: int = 0) -> None:
        """Numeric leaves of a (nested) dict, under dotted keys."""

    def log_inputs(self, inputs: Mapping[str, str]) -> None:
        """Fingerprints of what the stage read, as `input.<name>` tags."""

    def set_tags(self, tags: Mapping[str, str]) -> None:
        pass

    def log_artifact(self, path: Path | str, artifact_path: str | None = None) -> None:
        pass

    def log_dict(self, data: Mapping[str, Any], artifact_file: str) -> None:
        pass

    def log_artifacts(self, directory: Path | str, artifact_path: str | None = None) -> None:
        """Every file under `directory`, keeping the tree, under `artifact_path`."""


class TrackedRun(NullRun):
    def __init__(self, client: MlflowClient, run_id: str, target: Target) -> None:
        self.client, self.run_id, self.target = client, run_id, target

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, v) for k, v in param_values(params).items()]
        for start in range(0, len(items), BATCH):
            self.client.log_batch(self.run_id, params=items[start:start + BATCH])

    def log_metrics(self, metrics: Mapping[str, Any], step: int = 0) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, v, now, step) for k, v in numeric_metrics(metrics).items()]
        for start in range(0, len(items), BATCH):
            self.client.log_batch(self.run_id, metrics=items[start:start + BATCH])

    def log_inputs(self, inputs: Mapping[str, str]) -> None:
        self.set_tags({f"input.{name}": value for name, value in inputs.items()})

    def set_tags(self, tags: Mapping[str, str]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(k, truncate(str(v), TAG_VALUE_LIMIT)) for k, v in tags.items()]
        for start in range(0, len(items), BATCH):
            self.client.log_batch(self.run_id, tags=items[start:start + BATCH])

    def log_artifact(self, path: Path | str, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path)

    def log_dict(self, data: Mapping[str, Any], artifact_file: str) -> None:
        self.client.log_dict(self.run_id, dict(data), artifact_file)

    def log_artifacts(self, directory: Path | str, artifact_path: str | None = None) -> None:
        self.client.log_artifacts(self.run_id, str(directory), artifact_path)


@contextmanager
def stage_run(study: Study, stage: str, item: str | None = None, params: Mapping[str, Any] | None = None,
              inputs: Mapping[str, str] | None = None) -> Iterator[NullRun]:
    """A run named `stage` or `stage@item` in the experiment named after the study, with params and
    lineage tags logged; it ends FINISHED, or FAILED (KILLED on Ctrl-C) when the body raises."""
    if not study.params.tracking.enabled:
        yield NullRun()
        return
    params = dict(params or {})
    run = _start(study, Target.of(study), stage, item, params)
    try:
        run.log_params(params)
        run.log_dict(params, "params.json")  # untruncated, as nested JSON
        run.log_inputs(inputs or {})
        yield run
    except BaseException as err:
        _end(run, "KILLED" if isinstance(err, KeyboardInterrupt) else "FAILED", err)
        raise
    _end(run, "FINISHED")


def _start(study: Study, target: Target, stage: str, item: str | None, params: dict[str, Any]) -> TrackedRun:
    """Open the experiment and create the run; any failure is one line naming the URI."""
    try:
        client = target.client()
        experiment_id = _experiment_id(client, target)
        name = f"{stage}@{item}" if item else stage
        _close_orphans(client, experiment_id, name)
        tags = _lineage_tags(study, stage, item, params) | _process_tags()
        created = client.create_run(experiment_id, run_name=name, tags=tags)
    except CortexLensError:
        raise
    except Exception as err:  # sqlite, HTTP and permission errors all end the stage alike
        raise TrackingError(f"tracking.uri: cannot record runs in {target.tracking_uri}: "
                            f"{_first_line(err)}") from err
    return TrackedRun(client, created.info.run_id, target)


def _process_tags() -> dict[str, str]:
    return {TAG_HOST: socket.gethostname(), TAG_PID: str(os.getpid())}


def _close_orphans(client: MlflowClient, experiment_id: str, name: str) -> None:
    """Mark KILLED the earlier runs of this stage that are still RUNNING although the process that
    opened them on this host is gone (SIGKILL, power loss: nothing could close them). Runs of other
    hosts, and of processes still alive, are left alone."""
    host = socket.gethostname()
    running = client.search_runs([experiment_id], max_results=1000,
                                 filter_string=f"attributes.status = 'RUNNING' and attributes.run_name = '{name}'")
    for run in running:
        tags = run.data.tags
        if tags.get(TAG_HOST) != host or not tags.get(TAG_PID, "").isdigit():
            continue
        pid = int(tags[TAG_PID])
        if pid != os.getpid() and not _alive(pid):
            client.set_tag(run.info.run_id, "cortexlens.error",
                           f"process {pid} on {host} ended without closing the run")
            client.set_terminated(run.info.run_id, "KILLED")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0]}" if text else type(err).__name__


def _experiment_id(client: MlflowClient, target: Target) -> str:
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(target.experiment)
    if experiment is None:
        try:
            return client.create_experiment(target.experiment, artifact_location=_artifact_location(target))
        except MlflowException:  # another stage created it meanwhile
            experiment = client.get_experiment_by_name(target.experiment)
            if experiment is None:
                raise
    if experiment.lifecycle_stage != "active":
        raise TrackingError(f"study: experiment {target.experiment!r} is deleted in {target.tracking_uri}; "
                            f"restore it (mlflow experiments restore) or rename the study")
    return experiment.experiment_id


def _artifact_location(target: Target) -> str | None:
    """Artifacts of a local database live beside it, in mlruns/<experiment> (MLflow would use ./mlruns
    of whatever directory the first stage ran in); a server decides for itself."""
    db = local_sqlite_file(target.tracking_uri)
    if db is None or not db.is_absolute():
        return None
    return (db.parent / "mlruns" / target.experiment).as_uri()


def _lineage_tags(study: Study, stage: str, item: str | None, params: Mapping[str, Any]) -> dict[str, str]:
    git = git_state(study.root)
    tags = {
        "cortexlens.stage": stage,
        "cortexlens.version": cortexlens.__version__,
        "params.hash": params_hash(params),
        "params.file": str(study.file),
        **git,
        "mlflow.source.name": f"stages.{stage}",
        "mlflow.source.type": "LOCAL",
        "mlflow.user": _user(),
    }
    if item is not None:
        tags["cortexlens.item"] = item
    if git["git.commit"] != "unknown":
        tags["mlflow.source.git.commit"] = git["git.commit"]  # shown as "Git commit" in the UI
    return tags


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry in some containers
        return "unknown"


def _end(run: TrackedRun, status: str, error: BaseException | None = None) -> None:
    try:
        if error is not None:
            run.set_tags({"cortexlens.error": _first_line(error)})
        run.client.set_terminated(run.run_id, status)
    except Exception as err:  # noqa: BLE001 -- never hide the stage's own error behind this one
        warnings.warn(f"could not mark MLflow run {run.run_id} {status}: {err}", stacklevel=3)


@contextmanager
def fluent_uris(target: Target) -> Iterator[None]:
    """MLflow's model logging reads the process-wide URIs: set them for the block, then clear them and
    restore the environment variables MLflow exports, so the next study resolves its own default.
    Other threads' runs are unaffected: they write through clients bound to explicit URIs."""
    import mlflow

    with _FLUENT:
        saved = {key: os.environ.get(key) for key in (*_URI_ENV, _BARS)}
        os.environ.setdefault(_BARS, "false")  # per-file download bars in a stage's output are noise
        mlflow.set_tracking_uri(target.tracking_uri)
        mlflow.set_registry_uri(target.registry_uri)
        try:
            yield
        finally:
            mlflow.set_tracking_uri(None)
            mlflow.set_registry_uri(None)
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
