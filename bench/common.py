"""Shared helpers for benchmarks: timing several contenders over the same work in one process."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def time_rounds(contenders: dict[str, Callable[[], None]], rounds: int) -> dict[str, float]:
    """Median wall time per contender; rounds interleave contenders so drift hits each alike."""
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, fn in contenders.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}
