"""torch's global random number generator, used by one caller at a time.

torch's default generator is process-wide. The Prefect flow runs independent stages in threads of one
process, so a stage that seeds it (loading a model) while another stage initialises weights from it
(train_toy) would change that model's weights: a race that made the toy model differ from run to run
while extract@minilm trained beside it. Every use of the global generator in cortexlens goes through
`seeded`, which holds one lock and restores the generator afterwards (`fork_rng`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import torch

_LOCK = threading.RLock()


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run the block with the global generator seeded to `seed`, alone, and restore it afterwards."""
    with _LOCK, torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield
