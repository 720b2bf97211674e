"""probe: layer-wise linear probes of one model, with control tasks, and each concept's depth.

    python -m stages.probe --model minilm

For every concept of probe.concepts: logistic-regression probes on pooled features (and activations at
probe.positions) of every probed hook point and layer, cross-validated over folds grouped by lexical
item, with control accuracy and selectivity; the concept's best layer and depth. Writes
<store>/probe/<model>/ (the `probes` and `concept_depth` views, weights/<concept>.safetensors + .json)
and the metrics file dvc.yaml declares; registers the model's probes in MLflow.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from cortexlens.errors import ConfigError
from cortexlens.pipeline.stage import Stage, StageContext
from cortexlens.probes.concepts import Concept, resolve
from cortexlens.probes.features import FeatureCache
from cortexlens.probes.plugin import probe_points
from cortexlens.probes.run import ProbeJob, ProbeSettings, fit_jobs, select_examples
from cortexlens.probes.tables import depth_rows, probe_rows
from cortexlens.probes.weights import encode
from cortexlens.store.documents import read_documents


def run(ctx: StageContext) -> dict[str, Any]:
    study, name = ctx.study, ctx.item["model"]
    section = study.params.probe
    settings = ProbeSettings(tuple(section.Cs), section.folds, section.inner_folds, section.control, section.seed)
    n_layers = study.model_info(name).n_layers
    concepts = [resolve(study, entry, f"probe.concepts[{i}]") for i, entry in enumerate(section.concepts)]
    chosen = _choose_examples(ctx, name, concepts)  # every data problem surfaces before anything is written
    features = FeatureCache(study.store_dir, name)
    saes = _saes(ctx, name)
    writer = ctx.results()
    for concept in tqdm(concepts, desc=f"probe {name}", unit="concept", disable=not ctx.progress):
        unit = f"concept={concept.name}"
        if writer.done(unit):
            continue
        jobs = _jobs(ctx, features, concept, chosen[concept.name]) + _sae_jobs(ctx, saes, concept, chosen[concept.name])
        outcomes = fit_jobs(jobs, settings, section.n_jobs)
        dense = [o for o in outcomes if o.features == "activations"]  # depth and weights: the dense probes
        weights, config = encode(name, concept.name, dense)
        writer.write_unit(unit, {"probes": probe_rows(name, concept, outcomes, n_layers),
                                 "concept_depth": depth_rows(name, concept, dense, n_layers, section.depth_fraction)},
                          {f"weights/{concept.name}.safetensors": weights, f"weights/{concept.name}.json": config})
    metrics = _metrics(writer, name)
    writer.finish(metrics)
    if section.register_probes:
        _register(ctx, name, metrics)
    return metrics


def _choose_examples(ctx: StageContext, model: str, concepts: list[Concept]) -> dict[str, tuple]:
    section, out = ctx.study.params.probe, {}
    for i, concept in enumerate(concepts):
        docs = read_documents(ctx.study.store_dir, model, concept.dataset)
        try:
            rows, y, groups = select_examples([d.labels for d in docs], concept.label, concept.group, concept.where,
                                              section.max_examples, section.seed)
        except ValueError as err:
            raise ConfigError(f"probe.concepts[{i}]: {concept.name} (dataset {concept.dataset!r}): {err}") from None
        out[concept.name] = (np.array([docs[r].doc_id for r in rows]), np.array([docs[r].n_tokens for r in rows]),
                             y, groups)
    return out


def _jobs(ctx: StageContext, features: FeatureCache, concept: Concept, chosen: tuple) -> list[ProbeJob]:
    section = ctx.study.params.probe
    doc_ids, n_tokens, y, groups = chosen
    jobs = []
    for point in probe_points(ctx.study, ctx.item["model"]):
        for pooling in section.poolings:
            X = features.pooled(concept.dataset, point, pooling, doc_ids)
            jobs.append(ProbeJob(point.hook, point.layer, pooling, X, y, groups))
        for position in section.positions:
            try:
                X = features.token(concept.dataset, point, position, doc_ids, n_tokens)
            except ValueError as err:
                raise ConfigError(f"probe.positions: {concept.name}: {err}") from None
            jobs.append(ProbeJob(point.hook, point.layer, f"pos={position}", X, y, groups))
    return jobs


def _saes(ctx: StageContext, model: str) -> list:
    """The probe.saes of `model` (SAEs of other probed models are theirs)."""
    from cortexlens.features.sae import load_sae, read_cfg, sae_folder

    out = []
    for i, sae_id in enumerate(ctx.study.params.probe.saes):
        folder, key = sae_folder(ctx.study.models_dir, sae_id), f"probe.saes[{i}]"
        cfg = read_cfg(folder, key)
        if (cfg.get("metadata") or {}).get("model_name", cfg.get("model_name")) == model:
            out.append(load_sae(folder, sae_id, key))
    return out


def _sae_jobs(ctx: StageContext, saes: list, concept: Concept, chosen: tuple) -> list[ProbeJob]:
    """k-sparse probes on each SAE's mean-pooled token latents of the chosen documents."""
    from cortexlens.features.spaces import sae_space

    section, doc_ids, (_, _, y, groups) = ctx.study.params.probe, chosen[0], chosen
    jobs = []
    for sae in saes:
        space = _SPACES.get((sae.sae_id, concept.dataset))
        if space is None:
            space = _SPACES[(sae.sae_id, concept.dataset)] = sae_space(
                ctx.study.store_dir, ctx.item["model"], concept.dataset, sae, "mean")
        rows = np.searchsorted(space.doc_ids, doc_ids)  # [n]: doc_ids are sorted in the space
        jobs.append(ProbeJob(sae.point.hook, sae.point.layer, "mean", space.X[rows], y, groups,
                             f"ksparse-{section.sae_k}", f"sae:{sae.sae_id}"))
    return jobs


_SPACES: dict[tuple[str, str], Any] = {}  # (sae_id, dataset) -> its pooled latents, shared by concepts


def _metrics(writer, model: str) -> dict[str, Any]:
    depth = writer.read("concept_depth").to_pylist()
    concepts = {}
    for r in depth:
        if r["pooling"] == "mean" or r["concept"] not in concepts:
            concepts[r["concept"]] = {"best_layer": r["best_layer"], "depth_layer": r["depth_layer"],
                                      "best_accuracy": round(r["best_accuracy"], 4),
                                      "best_selectivity": None if r["best_selectivity"] is None
                                      else round(r["best_selectivity"], 4), "best_probe": r["best_probe"]}
    return {"model": model, "probes": writer.read("probes").num_rows, "concepts": concepts}


def _register(ctx: StageContext, model: str, metrics: dict[str, Any]) -> None:
    """`<study>-probes-<model>`: a pyfunc over the weights, each concept defaulting to its best probe."""
    from cortexlens.tracking import TrackedRun
    from cortexlens.tracking.registry import register_pyfunc

    if not isinstance(ctx.tracked, TrackedRun):
        return
    import json

    import safetensors
    from safetensors.numpy import load_file

    weights = ctx.results_dir / "weights"
    index = {concept: m["best_probe"] for concept, m in metrics["concepts"].items()}
    first = next(iter(index))
    d = json.loads((weights / f"{first}.json").read_text())["probes"][0]["d"]
    example = np.zeros((2, d), np.float32) + load_file(str(weights / f"{first}.safetensors"))[f"{index[first]}/mean"]
    with tempfile.TemporaryDirectory(prefix="cortexlens-probes-") as tmp:
        shutil.copytree(weights, Path(tmp) / "probes")
        (Path(tmp) / "probes" / "index.json").write_text(json.dumps(index, indent=1))
        code = Path(__import__("cortexlens.tracking.probe_pyfunc", fromlist=["x"]).__file__)
        register_pyfunc(ctx.tracked, f"{ctx.study.params.study}-probes-{model}", ctx.study.params.tracking.alias,
                        "probes", code, {"probes": str(Path(tmp) / "probes")}, (example, {"concept": first}),
                        ["numpy", "pandas", f"safetensors=={safetensors.__version__}"])


def summary(m: dict[str, Any]) -> str:
    best = ", ".join(f"{c} {v['best_layer']} ({v['best_accuracy']:.2f})" for c, v in m["concepts"].items())
    return f"probe {m['model']}: {m['probes']} probes; best layer (accuracy) per concept: {best}"


STAGE = Stage("probe", run, require=("probe", "extract"), summary=summary)

if __name__ == "__main__":
    STAGE.main()
