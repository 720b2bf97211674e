"""`cortexlens lock-diff`: a lock out of step with the code is told apart from float drift of outputs."""

import copy
import json
import subprocess

import pytest
import yaml

from cortexlens.cli import main
from cortexlens.lockdiff import LockDiff, compare_locks, compare_metrics, report


def _entry(path: str, md5: str) -> dict:
    return {"path": path, "hash": "md5", "md5": md5, "size": 1}


LOCK = {"schema": "2.0", "stages": {
    "train": {"cmd": "python -m stages.train",
              "deps": [_entry("cortexlens/toy", "c0de.dir"), _entry("stages/train.py", "5a9e")],
              "params": {"params.yaml": {"train": {"steps": 800}}},
              "outs": [_entry("data/models/toy", "aaaa.dir"), _entry("reports/metrics/train.json", "m1")]},
    "probe@toy": {"cmd": "python -m stages.probe --model toy",
                  "deps": [_entry("cortexlens/probes", "bbbb.dir"), _entry("data/models/toy", "aaaa.dir")],
                  "outs": [_entry("data/store/probe/toy", "cccc.dir")]},
}}


def test_identical_locks_are_identical():
    diff = compare_locks(LOCK, copy.deepcopy(LOCK))
    assert diff.identical and report(diff) == ["lock-diff: identical: every output and metric has the committed bytes"]


def test_other_bytes_from_the_same_stages_are_drift_not_out_of_step():
    # the toy retrained to other bits: its output and the probe's dependency on it both change
    lock = copy.deepcopy(LOCK)
    lock["stages"]["train"]["outs"][0]["md5"] = "ffff.dir"
    lock["stages"]["probe@toy"]["deps"][1]["md5"] = "ffff.dir"
    lock["stages"]["probe@toy"]["outs"][0]["md5"] = "eeee.dir"
    diff = compare_locks(LOCK, lock)
    assert diff.out_of_step == []
    assert diff.outputs_changed == ["probe@toy: data/store/probe/toy", "train: data/models/toy"]


@pytest.mark.parametrize("change, named", [
    ({("probe@toy", "deps", 0, "md5"): "0ther.dir"}, "stage probe@toy: cortexlens/probes differs"),
    ({("train", "deps", 1, "path"): "stages/train2.py"}, "stage train: dependency stages/train.py only in the committed"),
    ({("train", "outs", 0, "path"): "data/models/toy2"}, "stage train: output data/models/toy only in the committed"),
])
def test_changed_code_or_layout_is_out_of_step_naming_stage_and_path(change, named):
    diff = compare_locks(LOCK, _apply(change))
    assert any(line.startswith(named) for line in diff.out_of_step), diff.out_of_step


def _apply(change: dict) -> dict:
    lock = copy.deepcopy(LOCK)
    for (stage, part, i, key), value in change.items():
        lock["stages"][stage][part][i][key] = value
    return lock


def test_commands_params_and_stages_are_out_of_step():
    lock = copy.deepcopy(LOCK)
    lock["stages"]["train"]["cmd"] = "python -m stages.train --fast"
    lock["stages"]["train"]["params"]["params.yaml"]["train"] = {"steps": 900}
    lock["stages"]["sparsity@toy"] = lock["stages"].pop("probe@toy")
    problems = compare_locks(LOCK, lock).out_of_step
    assert "stage probe@toy: in the committed dvc.lock, not in this run's" in problems
    assert "stage sparsity@toy: in this run's dvc.lock, not in the committed one" in problems
    assert any("stage train: command" in p for p in problems)
    assert "stage train: params differ (train)" in problems


def test_metric_values_are_drift_and_metric_keys_are_out_of_step():
    diff = LockDiff()
    compare_metrics("m.json", {"a": {"acc": 0.284, "layer": 1, "probe": "L1"}, "n": 40, "old": 1},
                    {"a": {"acc": 0.2492, "layer": 0, "probe": "L0"}, "n": 40, "new": 1}, diff)
    assert diff.metrics_changed == ["m.json: a.acc: 0.284 -> 0.2492", "m.json: a.layer: 1 -> 0",
                                    "m.json: a.probe: 'L1' -> 'L0'"]
    assert diff.out_of_step == ["m.json: new only in this run's", "m.json: old only in the committed file"]


def _git(repo, *args):
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


@pytest.fixture
def repo(tmp_path):
    (tmp_path / "reports/metrics").mkdir(parents=True)
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump(LOCK))
    (tmp_path / "reports/metrics/train.json").write_text(json.dumps({"accuracy": 0.95}))
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "study")
    return tmp_path


def _run(repo, *flags) -> int:
    with pytest.raises(SystemExit) as done:
        main(["lock-diff", "--repo", str(repo), *flags])
    return done.value.code


def test_the_command_exits_0_on_drift_1_when_strict_or_out_of_step(repo, capsys):
    assert _run(repo) == 0 and "identical" in capsys.readouterr().out
    lock = copy.deepcopy(LOCK)
    lock["stages"]["train"]["outs"][1]["md5"] = "m2"
    (repo / "dvc.lock").write_text(yaml.safe_dump(lock))
    (repo / "reports/metrics/train.json").write_text(json.dumps({"accuracy": 0.9556}))
    assert _run(repo) == 0
    out = capsys.readouterr().out
    assert "float drift: 1 output(s) and 1 metric value(s)" in out
    assert "metric reports/metrics/train.json: accuracy: 0.95 -> 0.9556" in out
    assert _run(repo, "--strict") == 1
    capsys.readouterr()
    (repo / "stray.parquet").write_bytes(b"x")  # a run that writes outside its declared outputs
    assert _run(repo) == 1
    assert "stray.parquet: written by the run, not ignored (??)" in capsys.readouterr().out


def test_no_lock_is_one_line_and_exit_2(tmp_path, capsys):
    assert _run(tmp_path) == 2
    assert capsys.readouterr().err.strip() == f"lock-diff: {tmp_path / 'dvc.lock'}: no such file (run dvc repro first)"
