"""The toy model's training metrics (train_toy's metrics file) as a figure for the report."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cortexlens.errors import ConfigError
from cortexlens.report.figures import bar_png

# The induction task's two numbers and its baseline, as train_toy writes them.
FIRST, SECOND, CHANCE = "first_copy_accuracy", "second_copy_accuracy", "chance_accuracy"


@dataclass(frozen=True)
class ToyModel:
    metrics: dict[str, Any]
    png: bytes | None  # None if the file lacks the accuracies (an older or foreign metrics file)


def load_toy(metrics_path: Path) -> ToyModel | None:
    """None when train_toy has not run (the report then has no toy section)."""
    if not metrics_path.is_file():
        return None
    try:
        metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ConfigError(f"{metrics_path}: cannot read the toy model's metrics ({err})") from None
    if not isinstance(metrics, dict):
        raise ConfigError(f"{metrics_path}: expected a JSON object")
    png = None
    if isinstance(metrics.get(FIRST), (int, float)) and isinstance(metrics.get(SECOND), (int, float)):
        chance = metrics.get(CHANCE)
        png = bar_png(["first copy", "second copy"], [metrics[FIRST], metrics[SECOND]],
                      ylabel="next-token accuracy",
                      reference=("chance", float(chance)) if isinstance(chance, (int, float)) else None)
    return ToyModel(metrics, png)
