"""Where runs and registered models go: an explicit setting, else the environment, else one absolute
SQLite file next to params.yaml.

MLflow's own default is `sqlite:///mlflow.db` relative to the working directory, so stages or workers
started in different directories would each create their own database; ours is absolute.
"""

from __future__ import annotations

import os
from pathlib import Path

SQLITE = "sqlite:///"


def tracking_uri(setting: str | None, root: Path) -> str:
    """`tracking.uri` if set, else MLFLOW_TRACKING_URI, else sqlite:///<root>/mlflow.db (absolute)."""
    if setting:
        return _anchor(setting, root)
    if env := os.environ.get("MLFLOW_TRACKING_URI"):
        return env
    return SQLITE + (root.resolve() / "mlflow.db").as_posix()


def registry_uri(setting: str | None, tracking: str, root: Path) -> str:
    """`tracking.registry_uri` if set, else MLFLOW_REGISTRY_URI, else the tracking URI."""
    if setting:
        return _anchor(setting, root)
    return os.environ.get("MLFLOW_REGISTRY_URI") or tracking


def local_sqlite_file(uri: str) -> Path | None:
    """The database file of a sqlite:/// URI, or None for a server or another backend."""
    if not uri.startswith(SQLITE):
        return None
    path = uri.removeprefix(SQLITE).partition("?")[0]
    return None if path == ":memory:" else Path(path)


def _anchor(uri: str, root: Path) -> str:
    """A relative SQLite path in params.yaml is relative to its directory, like every other path there."""
    file = local_sqlite_file(uri)
    if file is None or file.is_absolute():
        return uri
    _, sep, query = uri.partition("?")
    return SQLITE + (root.resolve() / file).as_posix() + sep + query
