"""What every stage shares: the error boundary, argument parsing, metrics files."""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cortexlens.errors import CortexLensError
from cortexlens.store.atomic import write_json


def stage_main(fn: Callable[[list[str] | None], None]) -> Callable[[list[str] | None], None]:
    """User errors become one line per problem on stderr and exit status 2, with no traceback."""

    @functools.wraps(fn)
    def wrapper(argv: list[str] | None = None) -> None:
        try:
            fn(argv)
        except CortexLensError as err:
            for line in err.lines:
                print(line, file=sys.stderr)
            sys.exit(err.exit_code)
        except KeyboardInterrupt:
            print("interrupted; re-run to resume", file=sys.stderr)
            sys.exit(130)

    return wrapper


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return p


def metrics_file(reports_dir: Path, stage: str, item: str | None = None) -> Path:
    """reports/metrics/<stage>[-<item>].json, the path dvc.yaml declares as the stage's metrics."""
    return reports_dir / "metrics" / (f"{stage}-{item}.json" if item else f"{stage}.json")


def write_metrics(path: Path, metrics: dict[str, Any]) -> None:
    write_json(path, metrics)
