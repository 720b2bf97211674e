"""Concept depth ("Exploring Concept Depth", Jin et al. 2024): where in a model a concept becomes
linearly decodable.

Given a probe's accuracy at every layer, the best layer is the one with the highest accuracy (the
earliest of equals), and the depth layer the first layer whose accuracy reaches `fraction` (0.9) of
the best. Both are also given as relative depth, (layer + 1) / n_layers: the fraction of the model's
blocks the representation has passed through, so models of different depths compare.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class ConceptDepth:
    best_layer: int
    depth_layer: int
    best_accuracy: float
    best_depth: float  # relative
    depth: float  # relative


def relative_depth(layer: int, n_layers: int) -> float:
    return (layer + 1) / n_layers


def concept_depth(accuracy_by_layer: Mapping[int, float], n_layers: int, fraction: float = 0.9) -> ConceptDepth:
    layers = sorted(accuracy_by_layer)
    best_layer = max(layers, key=lambda layer: (accuracy_by_layer[layer], -layer))
    best = accuracy_by_layer[best_layer]
    depth_layer = next(layer for layer in layers if accuracy_by_layer[layer] >= fraction * best)
    return ConceptDepth(best_layer, depth_layer, best, relative_depth(best_layer, n_layers),
                        relative_depth(depth_layer, n_layers))
