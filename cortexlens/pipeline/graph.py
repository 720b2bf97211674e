"""Which stage needs which: a stage depends on another when one of its deps overlaps one of the
other's outputs (the same path, a path inside it, or a directory containing it), as DVC links them.

The flow runs a stage as soon as everything it depends on has finished, so independent stages
(`extract@minilm` beside `train_toy`) run at the same time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from cortexlens.errors import ConfigError
from cortexlens.pipeline.dvcfile import StageSpec


def _overlap(a: Path, b: Path) -> bool:
    return a == b or a in b.parents or b in a.parents


def dependencies(specs: Mapping[str, StageSpec]) -> dict[str, set[str]]:
    """full name -> the full names of the stages it must wait for."""
    needs: dict[str, set[str]] = {name: set() for name in specs}
    for name, spec in specs.items():
        for other, upstream in specs.items():
            if other != name and any(_overlap(dep, out) for dep in spec.deps for out in upstream.written):
                needs[name].add(other)
    return needs


def execution_order(needs: Mapping[str, set[str]]) -> list[str]:
    """A topological order (dvc.yaml order among stages that are ready together); ConfigError on a cycle."""
    order: list[str] = []
    done: set[str] = set()
    pending = list(needs)
    while pending:
        ready = [name for name in pending if needs[name] <= done]
        if not ready:
            raise ConfigError(f"dvc.yaml: stages depend on each other in a cycle: {', '.join(pending)}")
        order += ready
        done |= set(ready)
        pending = [name for name in pending if name not in done]
    return order


def upstream_of(needs: Mapping[str, set[str]], names: Iterable[str]) -> set[str]:
    """Every stage that `names` depend on, directly or not."""
    seen: set[str] = set()
    stack = list(names)
    while stack:
        for parent in needs[stack.pop()]:
            if parent not in seen:
                seen.add(parent)
                stack.append(parent)
    return seen


def downstream_of(needs: Mapping[str, set[str]], name: str) -> set[str]:
    """Every stage that depends on `name`, directly or not (skipped when `name` fails)."""
    children = {child for child, parents in needs.items() if name in parents}
    out = set(children)
    for child in children:
        out |= downstream_of(needs, child)
    return out
