"""patch: causal interventions on one model's tasks (activation, attribution, causal tracing, subspace).

    python -m stages.patch --model toy

For each task of patch.tasks whose model this is: exact activation patching over layer x position of
patch.hooks and per head (denoising and noising, and mean ablation of each head), attribution patching
of the same sites, causal tracing where the prompts have subjects, and subspace patching along each of
patch.directions with the illusion check. Every prompt pair, direction and setting is checked before
anything is written. Writes <store>/patch/<model>/ (the `patching` view) and the metrics file.
"""

from __future__ import annotations

from typing import Any

from tqdm.auto import tqdm

from cortexlens.patching import activation as act
from cortexlens.patching.build import build_task, load_direction, where_of
from cortexlens.patching.metrics import summarise
from cortexlens.patching.rows import TABLE, table
from cortexlens.patching.run import activation_rows, attribution_rows, subspace_rows, tracing_rows
from cortexlens.pipeline.stage import Stage, StageContext, only_own_model_dirs
from cortexlens.toy.circuit import head_scores

SCORE_SEQUENCES, SCORE_LENGTH = 200, 10  # as train_toy measures the toy model's heads


def run(ctx: StageContext) -> dict[str, Any]:
    study, name = ctx.study, ctx.item["model"]
    section = study.params.patch
    model = ctx.load_model(name).model
    # Everything is checked before the first write: tasks (token counts, one-token answers), directions.
    tasks = {spec.name: build_task(study, model, spec, f"patch.tasks[{i}]")
             for i, spec in enumerate(section.tasks) if spec.model == name}
    directions = [(spec, where_of(model, spec), load_direction(study, model, spec, f"patch.directions[{i}]"))
                  for i, spec in enumerate(section.directions) if spec.task in tasks]
    scores = _head_scores(model, section.seed)
    writer = ctx.results()
    total = sum(_work(model, task, section) for task in tasks.values())
    bar = tqdm(total=total, desc=f"patch {name}", unit="run", disable=not ctx.progress, mininterval=1.0)
    for task in tasks.values():
        base = act.baseline(model, task)
        units = {"activation": lambda t=task, b=base: activation_rows(model, t, b, section, scores, bar.update)}
        if section.attribution:
            units["attribution"] = lambda t=task, b=base: attribution_rows(model, t, b, section, scores)
        if section.tracing is not None and task.subject is not None:
            units["tracing"] = lambda t=task, b=base: tracing_rows(model, t, b, section, bar.update)
        for spec, where, vector in directions:
            if spec.task == task.name:
                units[f"subspace-{spec.name}"] = (lambda s=spec, w=where, v=vector, t=task:
                                                  subspace_rows(model, t, s, w, v, section))
        for unit, make in units.items():
            if not writer.done(f"{task.name}-{unit}"):
                writer.write_unit(f"{task.name}-{unit}", {TABLE: table(make())})
    bar.close()
    rows = writer.read(TABLE)
    metrics = summarise(name, rows.to_pylist() if rows is not None else [])
    writer.finish(metrics)
    return metrics


def _head_scores(model, seed: int) -> dict[tuple[int, int], tuple[float, float]]:
    """Every head's previous-token and prefix-matching score, from attention patterns on random repeats."""
    scores = head_scores(model.model, SCORE_SEQUENCES, SCORE_LENGTH, 2 * seed + 2, model.device)
    return {(r["layer"], r["head"]): (r["previous_token"], r["prefix_matching"]) for r in scores.rows()}


def _work(model, task, section) -> int:
    """Patched runs of the task (for the progress bar)."""
    n_sites = len(section.hooks) * model.dims.n_layers * len(task.positions())
    heads = 2 * model.dims.n_layers * model.dims.n_heads if section.heads else 0
    runs = len(section.modes) * (n_sites + heads) * len(task) + (heads // 2) * len(task)
    if section.tracing is not None and task.subject is not None:
        runs += len(section.tracing.kinds) * n_sites // max(len(section.hooks), 1) * section.tracing.samples * len(task)
    return runs


def summary(m: dict[str, Any]) -> str:
    parts = []
    for task, t in m["tasks"].items():
        text = f"{task}: LD clean {t['clean_logit_diff']:.2f} / corrupted {t['corrupted_logit_diff']:.2f}"
        if t.get("top_head"):
            text += f", top head {t['top_head']} (prefix matching {t['top_head_prefix_matching']:.2f})"
        if t.get("tracing_peak"):
            peak = t["tracing_peak"]
            text += f", tracing peak {peak['kind']} L{peak['layer']} pos {peak['pos']} ({peak['effect']:.2f})"
        parts.append(text)
    return f"patch {m['model']}: " + "; ".join(parts)


STAGE = Stage("patch", run, require=("patch",), summary=summary, refine=only_own_model_dirs)

if __name__ == "__main__":
    STAGE.main()
