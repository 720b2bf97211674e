"""What a run records besides its metrics: flattened params, their hash, the git state, input fingerprints.

Pure functions (git aside), so the hash and the flattening can be recomputed outside MLflow.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# MLflow 3.17's limits (mlflow.utils.validation), kept here so this module does not import mlflow.
PARAM_VALUE_LIMIT = 6000  # MAX_PARAM_VAL_LENGTH
TAG_VALUE_LIMIT = 8000  # MAX_TAG_VAL_LENGTH
UNKNOWN = "unknown"


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}. Lists and empty mappings are leaves."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def param_values(params: Mapping[str, Any]) -> dict[str, str]:
    """Dotted keys -> strings: str as is, anything else as compact JSON (true, null, [1, 2]), truncated."""
    out = {}
    for key, value in flatten(params).items():
        text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), default=str)
        out[key] = truncate(text, PARAM_VALUE_LIMIT)
    return out


def numeric_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Dotted keys of the numeric leaves; strings (a model name) and booleans are not metrics."""
    return {key: float(value) for key, value in flatten(metrics).items()
            if isinstance(value, (int, float)) and not isinstance(value, bool)}


def params_hash(params: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON: sorted keys, no spaces, so the same settings always hash the same."""
    canonical = json.dumps(params, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def git_state(directory: Path) -> dict[str, str]:
    """git.commit (HEAD) and git.dirty (tracked files modified) of the repository holding `directory`."""
    commit = _git(directory, "rev-parse", "HEAD")
    if commit is None:
        return {"git.commit": UNKNOWN, "git.dirty": UNKNOWN}
    status = _git(directory, "status", "--porcelain", "--untracked-files=no")
    dirty = UNKNOWN if status is None else str(bool(status)).lower()
    return {"git.commit": commit, "git.dirty": dirty}


def _git(directory: Path, *args: str) -> str | None:
    """Output of a git command, or None when git is missing or `directory` is not in a repository."""
    try:
        done = subprocess.run(["git", *args], cwd=directory, capture_output=True, text=True, timeout=30,
                              check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 3] + "..."
