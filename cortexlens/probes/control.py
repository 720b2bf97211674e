"""Control tasks (Hewitt and Liang 2019): the same probe on labels that carry no property of the input.

Each lexical type (the probe's group: an entity, an adjective, a template) gets one label at random,
and every example of the type takes it, dealt so that the class balance over examples is the real
one (up to one type's size). The folds are
stratified by class (cross_validation uses StratifiedGroupKFold), so no fold's training part is
starved of the class its test types hold. A probe can only score above chance on such labels by memorising types, which the grouped
folds prevent (test types are unseen), so control accuracy sits near chance, and selectivity =
accuracy - control accuracy says how much of the accuracy is the model's, not the probe's.
"""

from __future__ import annotations

import numpy as np


def control_labels(y: np.ndarray, groups: np.ndarray, seed: int) -> np.ndarray:
    """[n] labels constant within each group, with the real labels' class balance over examples.

    Types are visited in a random (seeded) order and each takes the class furthest below its share of
    examples, so every class ends within one type's size of its real count."""
    types, inverse = np.unique(groups, return_inverse=True)
    sizes = np.bincount(inverse)  # [types] examples per type
    classes, counts = np.unique(y, return_counts=True)
    remaining = counts.astype(np.float64)
    dealt = np.empty(len(types), dtype=classes.dtype)
    for t in np.random.default_rng(seed).permutation(len(types)):
        c = int(np.argmax(remaining / counts))
        dealt[t] = classes[c]
        remaining[c] -= sizes[t]
    return dealt[inverse]
