"""Compare a run's dvc.lock and metrics files with a git revision's: `cortexlens lock-diff`.

DVC's convention commits dvc.lock and the metrics files, so `git status` after `dvc repro` says what a
run changed. Two different things show up there alike, and this module tells them apart:

- **out of step**: a stage's command, params, code or source data differ from the committed lock's, a
  stage is new or gone, a metric appeared or vanished, or the run wrote some other tracked file. The
  committed lock does not describe this code: commit the new one.
- **float drift**: every stage is the committed one (same command, params, code and source data) and
  only what it produced differs: the hashes of its outputs and the values in its metrics files. The same
  code on another CPU picks other float kernels (MKL, OpenBLAS and torch dispatch by instruction set), and
  training compounds the last bits; on the same kind of CPU the bytes are equal (README, "Experiments").

A dependency counts as source (code, data, params) unless some stage of the lock writes it: a dependency
on another stage's output follows that output, so its hash is drift, not a change of code.
"""

from __future__ import annotations

import json
import math
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cortexlens.errors import CortexLensError


@dataclass
class LockDiff:
    out_of_step: list[str] = field(default_factory=list)
    """Why the committed lock does not describe this run (empty: it does)."""
    outputs_changed: list[str] = field(default_factory=list)
    """`stage: path` of each output whose hash differs, the stage itself unchanged."""
    metrics_changed: list[str] = field(default_factory=list)
    """`file: key: committed -> now` of each metric value that differs."""

    @property
    def identical(self) -> bool:
        return not (self.out_of_step or self.outputs_changed or self.metrics_changed)


def _hash(entry: dict[str, Any]) -> str | None:
    return entry.get("md5") or entry.get("hash_value") or entry.get("etag")


def _generated(path: str, outs: set[str]) -> bool:
    """True when a stage writes `path`, or a folder of it, or a file inside it."""
    return any(path == o or path.startswith(o.rstrip("/") + "/") or o.startswith(path.rstrip("/") + "/")
               for o in outs)


def compare_locks(committed: dict[str, Any], current: dict[str, Any]) -> LockDiff:
    """The two parsed dvc.lock files, stage by stage."""
    diff = LockDiff()
    old, new = committed.get("stages") or {}, current.get("stages") or {}
    for name in sorted(set(old) - set(new)):
        diff.out_of_step.append(f"stage {name}: in the committed dvc.lock, not in this run's")
    for name in sorted(set(new) - set(old)):
        diff.out_of_step.append(f"stage {name}: in this run's dvc.lock, not in the committed one")
    outs = {o["path"] for stage in new.values() for o in stage.get("outs") or []}
    for name in sorted(set(old) & set(new)):
        a, b = old[name], new[name]
        if a.get("cmd") != b.get("cmd"):
            diff.out_of_step.append(f"stage {name}: command {a.get('cmd')!r} -> {b.get('cmd')!r}")
        if (a.get("params") or {}) != (b.get("params") or {}):
            diff.out_of_step.append(f"stage {name}: params differ ({_params_keys(a, b)})")
        deps_a = {d["path"]: _hash(d) for d in a.get("deps") or []}
        deps_b = {d["path"]: _hash(d) for d in b.get("deps") or []}
        for path in sorted(set(deps_a) ^ set(deps_b)):
            diff.out_of_step.append(f"stage {name}: dependency {path} only in {'the committed' if path in deps_a else 'this run'}'s lock")
        for path in sorted(set(deps_a) & set(deps_b)):
            if deps_a[path] != deps_b[path] and not _generated(path, outs):
                diff.out_of_step.append(f"stage {name}: {path} differs from the committed lock's (code or source data)")
        outs_a = {o["path"]: _hash(o) for o in a.get("outs") or []}
        outs_b = {o["path"]: _hash(o) for o in b.get("outs") or []}
        for path in sorted(set(outs_a) ^ set(outs_b)):
            diff.out_of_step.append(f"stage {name}: output {path} only in {'the committed' if path in outs_a else 'this run'}'s lock")
        diff.outputs_changed += [f"{name}: {path}" for path in sorted(set(outs_a) & set(outs_b))
                                 if outs_a[path] != outs_b[path]]
    return diff


def _params_keys(a: dict[str, Any], b: dict[str, Any]) -> str:
    pa = {(f, k): v for f, ps in (a.get("params") or {}).items() for k, v in ps.items()}
    pb = {(f, k): v for f, ps in (b.get("params") or {}).items() for k, v in ps.items()}
    return ", ".join(sorted(k for _, k in {key for key in pa.keys() | pb.keys() if pa.get(key) != pb.get(key)}))


def compare_metrics(name: str, committed: Any, current: Any, diff: LockDiff, key: str = "") -> None:
    """Walk two parsed metrics files: a key or type that differs is out of step, a value is drift."""
    where = f"{name}: {key or '(top)'}"
    if isinstance(committed, dict) and isinstance(current, dict):
        for k in sorted(set(committed) ^ set(current), key=str):
            side = "the committed file" if k in committed else "this run's"
            diff.out_of_step.append(f"{name}: {_join(key, k)} only in {side}")
        for k in sorted(set(committed) & set(current), key=str):
            compare_metrics(name, committed[k], current[k], diff, _join(key, k))
    elif isinstance(committed, list) and isinstance(current, list):
        if len(committed) != len(current):
            diff.out_of_step.append(f"{where}: {len(committed)} -> {len(current)} entries")
        for i, (a, b) in enumerate(zip(committed, current)):
            compare_metrics(name, a, b, diff, f"{key}[{i}]")
    elif _number(committed) and _number(current):
        if committed != current and not (math.isnan(committed) and math.isnan(current)):
            diff.metrics_changed.append(f"{where}: {committed} -> {current}")
    elif type(committed) is not type(current):
        diff.out_of_step.append(f"{where}: {type(committed).__name__} -> {type(current).__name__}")
    elif committed != current:  # a string or bool result (a best probe, a chosen layer's name)
        diff.metrics_changed.append(f"{where}: {committed!r} -> {current!r}")


def _join(key: str, k: Any) -> str:
    return f"{key}.{k}" if key else str(k)


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True)
    if done.returncode != 0:
        said = done.stderr.strip().splitlines()
        raise CortexLensError(f"lock-diff: git {' '.join(args)}: {said[-1] if said else f'exit {done.returncode}'}")
    return done.stdout


def diff_worktree(repo: Path, rev: str = "HEAD", lock: str = "dvc.lock") -> LockDiff:
    """This working tree's dvc.lock, its metrics files (the lock's tracked .json outputs) and every
    other file `git status` lists, against `rev`."""
    repo = Path(repo)
    if not (repo / lock).is_file():
        raise CortexLensError(f"lock-diff: {repo / lock}: no such file (run dvc repro first)")
    current = yaml.safe_load((repo / lock).read_text())
    committed = yaml.safe_load(_git(repo, "show", f"{rev}:{lock}"))
    diff = compare_locks(committed, current)
    tracked = set(_git(repo, "ls-tree", "-r", "--name-only", rev).splitlines())
    metrics = sorted({o["path"] for stage in (current.get("stages") or {}).values()
                      for o in stage.get("outs") or [] if o["path"].endswith(".json") and o["path"] in tracked})
    for path in metrics:
        try:
            now = json.loads((repo / path).read_text())
        except (OSError, json.JSONDecodeError) as err:
            diff.out_of_step.append(f"{path}: unreadable in this run ({err})")
            continue
        compare_metrics(path, json.loads(_git(repo, "show", f"{rev}:{path}")), now, diff)
    for line in _git(repo, "status", "--porcelain", "--untracked-files=all").splitlines():
        path = line[3:].split(" -> ")[-1]
        if path != lock and path not in metrics:
            what = "written by the run, not ignored" if line.startswith("??") else f"differs from {rev}"
            diff.out_of_step.append(f"{path}: {what} ({line[:2].strip()})")
    return diff


def report(diff: LockDiff, shown: int = 25) -> list[str]:
    """Lines for the terminal: a verdict, then what differs (the first `shown` of each kind)."""
    if diff.identical:
        return ["lock-diff: identical: every output and metric has the committed bytes"]
    lines = []
    if diff.out_of_step:
        lines.append(f"lock-diff: OUT OF STEP: {len(diff.out_of_step)} difference(s) in what the stages are; "
                     "commit the new dvc.lock and metrics with the code")
        lines += [f"  {line}" for line in diff.out_of_step[:shown]]
    if diff.outputs_changed or diff.metrics_changed:
        counts = f"{len(diff.outputs_changed)} output(s) and {len(diff.metrics_changed)} metric value(s) differ"
        lines.append(f"lock-diff: and {counts}" if diff.out_of_step else
                     f"lock-diff: float drift: {counts} from unchanged stages (this CPU's float kernels; "
                     "same code, params and inputs)")
        lines += [f"  output {line}" for line in diff.outputs_changed[:shown]]
        lines += [f"  metric {line}" for line in diff.metrics_changed[:shown]]
        hidden = max(0, len(diff.outputs_changed) - shown) + max(0, len(diff.metrics_changed) - shown)
        if hidden:
            lines.append(f"  ... and {hidden} more")
    return lines
