"""brain: cross-validated ridge encoding models of subjects' responses, layer by layer, with noise ceilings.

    python -m stages.brain --model minilm

For one model of brain.models: every hook point and layer of brain.hooks/layers of the model, of its
random-init control (init = 'random') and of the SAEs of brain.saes, against every subject of
brain.subjects: held-out r per neuroid, noise ceilings, normalised scores, per-ROI medians with
permutation p-values, and the encoding weights. Writes <store>/brain/<model>/ (the `brain_scores` and
`brain_layers` views, weights/*.safetensors + .json) and the metrics file dvc.yaml declares.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm.auto import tqdm

from cortexlens.brain.encoding import EncodingJob, EncodingSettings, run_jobs
from cortexlens.brain.plan import FeatureSet, control_of, feature_sets, sae_entries
from cortexlens.brain.subjects import PreparedSubject, prepare_subjects
from cortexlens.brain.tables import Context, Scored, layer_rows, score_rows
from cortexlens.brain.weights import weight_files
from cortexlens.errors import ConfigError
from cortexlens.features.sae import SAE, load_sae, sae_folder
from cortexlens.features.spaces import FeatureSpace, pooled_space, sae_space
from cortexlens.pipeline.stage import Stage, StageContext, without_deps
from cortexlens.store import layout

if TYPE_CHECKING:
    from cortexlens.config.study import Study
    from cortexlens.pipeline.dvcfile import StageSpec


def run(ctx: StageContext) -> dict[str, Any]:
    study, name = ctx.study, ctx.item["model"]
    section = study.params.brain
    if name not in section.models:
        raise ConfigError(f"--model: {name!r} is not in brain.models ({', '.join(section.models)})")
    saes = _saes(ctx, name)
    sets = feature_sets(study, name, {sae_id: sae.point for sae_id, sae in saes.items()})
    subjects = prepare_subjects(study, name)  # every data problem surfaces before anything is written
    settings = _settings(section)
    context = Context(name, section.pooling, study.model_info(name).n_layers, section.min_ceiling, section.clip)
    writer = ctx.results()
    todo = [fs for fs in sets if not writer.done(fs.unit)]
    jobs = [_job(ctx, fs, subjects, saes, spaces={}) for fs in todo]
    by_unit = {fs.unit: fs for fs in todo}
    bar = tqdm(total=len(sets), initial=len(sets) - len(todo), desc=f"brain {name}", unit="feature set",
               disable=not ctx.progress)
    for unit, results in run_jobs(jobs, settings, section.n_jobs):
        fs = by_unit[unit]
        scored = [Scored(subject, result) for subject, result in zip(subjects, results)]
        files = weight_files(fs, context, scored) if section.save_weights else {}
        writer.write_unit(unit, {"brain_scores": score_rows(fs, context, scored),
                                 "brain_layers": layer_rows(fs, context, scored)}, files)
        bar.set_postfix_str(f"{fs.init} {fs.features} {fs.point.name}")
        bar.update()
    bar.close()
    metrics = _metrics(writer, name, sets, subjects)
    writer.finish(metrics)
    return metrics


def _job(ctx: StageContext, fs: FeatureSet, subjects: list[PreparedSubject], saes: dict[str, SAE],
         spaces: dict[tuple, FeatureSpace]) -> EncodingJob:
    """The features of every subject's stimuli in this feature set, with the subjects' mean responses."""
    X = []
    for subject in subjects:
        space = _space(ctx, fs, subject.dataset, saes, spaces)
        rows = np.searchsorted(space.doc_ids, subject.doc_ids)
        if not np.array_equal(space.doc_ids[np.minimum(rows, len(space.doc_ids) - 1)], subject.doc_ids):
            raise ConfigError(f"brain: the {subject.dataset!r} extraction of {fs.store_model} lacks stimuli "
                              f"of subject {subject.recording.subject}; re-run extract@{fs.store_model}")
        X.append(space.X[rows])
    return EncodingJob(fs.unit, X, [s.recording.mean for s in subjects], [s.groups for s in subjects])


def _settings(section) -> EncodingSettings:
    return EncodingSettings(tuple(section.alphas), section.folds, section.inner_cv, section.inner_folds,
                            section.standardize, section.n_permutations, section.null, section.seed, section.dtype,
                            section.target_batch, section.save_weights)


def _saes(ctx: StageContext, model: str) -> dict[str, SAE]:
    """The SAEs of brain.saes that encode `model`'s activations."""
    out = {}
    for i, sae_id, named in sae_entries(ctx.study):
        sae = load_sae(sae_folder(ctx.study.models_dir, sae_id), sae_id, f"brain.saes[{i}]")
        if (named or sae.model_name) == model:
            out[sae_id] = sae
    return out


def _space(ctx: StageContext, fs: FeatureSet, dataset: str, saes: dict[str, SAE],
           cache: dict[tuple, FeatureSpace]) -> FeatureSpace:
    key = (fs.store_model, fs.features, fs.point, dataset)
    if key not in cache:
        store, section = ctx.study.store_dir, ctx.study.params.brain
        if fs.sae is None:
            cache[key] = pooled_space(store, fs.store_model, dataset, fs.point, section.pooling)
        else:
            cache[key] = sae_space(store, fs.store_model, dataset, saes[fs.sae], section.pooling, section.sae_pooling)
    return cache[key]


def _metrics(writer, model: str, sets: list[FeatureSet], subjects) -> dict[str, Any]:
    """Per subject, init, features and ROI: the best layer by normalised score (or r), its score and p."""
    rows = writer.read("brain_layers").to_pylist()
    best: dict[str, dict] = {}
    for r in rows:
        score = r["r_normalized"] if r["r_normalized"] is not None else r["r"]
        slot = best.setdefault(r["subject"], {}).setdefault(r["init"] if r["features"] == "activations"
                                                           else r["features"], {})
        if r["roi"] not in slot or score > slot[r["roi"]]["score"]:
            slot[r["roi"]] = {"score": score, "best_layer": r["layer"], "hook": r["hook"], "r": round(r["r"], 4),
                              "r_normalized": None if r["r_normalized"] is None else round(r["r_normalized"], 4),
                              "p_value": r["p_value"]}
    for subject in best.values():
        for per_roi in subject.values():
            for v in per_roi.values():
                v.pop("score")
    return {"model": model, "feature_sets": len(sets), "subjects": len(subjects),
            "neuroids": sum(len(s.recording.neuroids) for s in subjects), "best": best}


def summary(m: dict[str, Any]) -> str:
    parts = []
    for subject, inits in m["best"].items():
        for init, rois in inits.items():
            roi_text = ", ".join(f"{roi} L{v['best_layer']} {v['r_normalized'] if v['r_normalized'] is not None else v['r']}"
                                 for roi, v in rois.items() if roi != "all")
            parts.append(f"{subject}/{init}: {roi_text}")
    return f"brain {m['model']}: {m['feature_sets']} feature sets x {m['subjects']} subject(s); best layer " \
           f"(normalised score) per ROI: " + "; ".join(parts)


def only_scored_extractions(spec: StageSpec, study: Study) -> StageSpec:
    """A `refine` for the flow: dvc.yaml makes every brain@<m> depend on the whole extract directory (a DVC
    matrix cannot name a model's control); keep only the extractions this item reads: the model's, its
    random-init control's and the planted subjects' models'."""
    model = spec.item_values["model"]
    keep = {model}
    control, _ = control_of(study, model)
    if control is not None:
        keep.add(control)
    keep |= {s.model for s in study.params.brain.subjects if getattr(s, "kind", None) == "planted"}
    extract_dir = (study.store_dir / layout.EXTRACT).resolve()
    spec = without_deps(spec, lambda dep: dep.resolve() == extract_dir)
    return replace(spec, deps=spec.deps + tuple(layout.model_dir(study.store_dir, m) for m in sorted(keep)))


STAGE = Stage("brain", run, require=("brain", "extract"), summary=summary, refine=only_scored_extractions)

if __name__ == "__main__":
    STAGE.main()
