"""The rows of the `probes` and `concept_depth` tables, from one concept's fitted probes."""

from __future__ import annotations

from cortexlens.probes.concepts import Concept
from cortexlens.probes.depth import concept_depth, relative_depth
from cortexlens.probes.run import ProbeOutcome
from cortexlens.probes.weights import key_of


def probe_rows(model: str, concept: Concept, outcomes: list[ProbeOutcome], n_layers: int) -> dict[str, list]:
    rows: dict[str, list] = {k: [] for k in (
        "model", "dataset", "concept", "hook", "layer", "pooling", "probe", "accuracy", "accuracy_sd",
        "control_accuracy", "selectivity", "n_train", "n_test", "tier", "depth", "n_layers", "C",
        "fold_accuracies", "n_classes", "features")}
    for o in outcomes:
        control = o.control.accuracy if o.control is not None else None
        values = (model, concept.dataset, concept.name, o.hook, o.layer, o.pooling, o.probe, o.scores.accuracy,
                  o.scores.accuracy_sd, control, None if control is None else o.scores.accuracy - control,
                  o.scores.n_train, o.scores.n_test, concept.tier, relative_depth(o.layer, n_layers), n_layers,
                  float(o.final.C_), o.scores.accuracies, len(o.final.classes_), o.features)
        for key, value in zip(rows, values, strict=True):
            rows[key].append(value)
    return rows


def depth_rows(model: str, concept: Concept, outcomes: list[ProbeOutcome], n_layers: int,
                fraction: float) -> dict[str, list]:
    rows: dict[str, list] = {k: [] for k in ("model", "concept", "best_layer", "depth_layer", "best_accuracy",
                                             "hook", "pooling", "best_depth", "depth", "n_layers", "tier",
                                             "best_selectivity", "best_probe")}
    for hook, pooling in dict.fromkeys((o.hook, o.pooling) for o in outcomes):
        by_layer = {o.layer: o for o in outcomes if (o.hook, o.pooling) == (hook, pooling)}
        found = concept_depth({layer: o.scores.accuracy for layer, o in by_layer.items()}, n_layers, fraction)
        best = by_layer[found.best_layer]
        selectivity = best.scores.accuracy - best.control.accuracy if best.control is not None else None
        values = (model, concept.name, found.best_layer, found.depth_layer, found.best_accuracy, hook, pooling,
                  found.best_depth, found.depth, n_layers, concept.tier, selectivity, key_of(best))
        for key, value in zip(rows, values, strict=True):
            rows[key].append(value)
    return rows
