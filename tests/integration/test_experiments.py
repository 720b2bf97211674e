"""DVC experiments compare runs: metrics files and dvc.lock live in git, as DVC's convention has it.

A small study in its own git repository: `dvc repro`, commit, then `dvc exp run -S
extract.max_length=8`; `dvc exp show --json` must give every metric of the workspace and of the
experiment (no error entries), and `dvc metrics diff` must compare them. With CORTEXLENS_STUDY set
(CI, after `make demo`), the same check runs on the demo's own repository with a cheap change.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.integration.prefect_support import BIN, make_project, small_params

pytestmark = pytest.mark.timeout(1200)
ENV = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1",
       "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}


def _run(cwd: Path, *args: str) -> str:
    proc = subprocess.run(list(args), cwd=cwd, env=ENV, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, f"{' '.join(args)}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def _shown(directory: Path) -> dict[str, dict]:
    """`dvc exp show --json`: name -> {metrics file -> data}; errors kept as they are."""
    out = {}
    for entry in json.loads(_run(directory, str(BIN / "dvc"), "exp", "show", "--json")):
        rows = [entry, *[exp for branch in entry.get("experiments") or [] for exp in branch.get("revs", [])]]
        for row in rows:
            name = row.get("name") or row.get("rev")
            out[name] = {"error": row.get("error"),
                         "metrics": (row.get("data") or {}).get("metrics") or {}}
    return out


def assert_every_metric_shown(directory: Path, experiment: str) -> None:
    shown = _shown(directory)
    files = {str(f.relative_to(directory)) for f in (directory / "reports" / "metrics").glob("*.json")}
    assert files, "no metrics files"
    for name in ("workspace", experiment):
        assert name in shown, sorted(shown)
        assert shown[name]["error"] is None, (name, shown[name]["error"])
        metrics = shown[name]["metrics"]
        assert set(metrics) >= files, (name, sorted(metrics))
        errors = {f: m["error"] for f, m in metrics.items() if m.get("error")}
        assert errors == {}, (name, errors)
        assert all(m.get("data") for m in metrics.values()), name


@pytest.mark.slow
def test_an_experiment_shows_every_metric_beside_the_workspace(tmp_path):
    base = small_params()
    params = small_params(extract={**base["extract"], "max_length": 64})  # the key `-S` overrides must exist
    study = make_project(tmp_path / "study", params, with_code=True).parent
    (study / ".gitignore").write_text("/data/\n/mlflow.db\n/reports/index.html\n/reports/plots/\n/.prefect/\n")
    _run(study, "git", "init", "-q")
    _run(study, str(BIN / "dvc"), "init", "-q")
    _run(study, str(BIN / "dvc"), "repro")
    _run(study, "git", "add", "-A")
    _run(study, "git", "commit", "-qm", "study")
    assert _run(study, "git", "status", "--porcelain") == ""
    # Truncating at 8 tokens changes what extraction stores: the metrics must say so, and only there.
    _run(study, str(BIN / "dvc"), "exp", "run", "-S", "extract.max_length=8", "-n", "len8")
    assert_every_metric_shown(study, "len8")
    diff = json.loads(_run(study, str(BIN / "dvc"), "metrics", "diff", "--json"))
    tokens = diff["reports/metrics/extract-minilm.json"]["datasets.corpus.tokens"]
    assert tokens["new"] < tokens["old"] and tokens["diff"] == tokens["new"] - tokens["old"]
    assert "reports/metrics/train_toy.json" not in diff  # the toy was not retrained


@pytest.mark.skipif("CORTEXLENS_STUDY" not in os.environ, reason="checks a study after `make demo` (CI)")
def test_demo_experiment_shows_every_metric_beside_the_workspace():
    study = Path(os.environ["CORTEXLENS_STUDY"])
    # A change only the report reads, so this re-runs one stage; then the workspace is put back.
    try:
        _run(study, str(BIN / "dvc"), "exp", "run", "-S", "report.max_table_rows=7", "-n", "ci-rows7")
        assert_every_metric_shown(study, "ci-rows7")
    finally:
        _run(study, "git", "checkout", "--", "params.yaml")
        _run(study, str(BIN / "dvc"), "repro")
        _run(study, str(BIN / "dvc"), "exp", "remove", "ci-rows7")
