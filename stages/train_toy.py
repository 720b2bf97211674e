"""train_toy: train the small induction model (a 2-layer Llama) and save it like any hub model.

    python -m stages.train_toy

Writes <paths.models>/toy (save_pretrained: safetensors, config, tokenizer), every head's
previous-token, prefix-matching and first-token scores to <store>/train_toy (the `toy_heads` view) and the
metrics file dvc.yaml declares (held-out induction accuracy, the circuit's scores). With tracking on,
the run is recorded in MLflow and the model registered as `<study>-toy`.
"""

from __future__ import annotations

from typing import Any

from cortexlens.models.loading import resolve_device
from cortexlens.pipeline.stage import Stage, StageContext
from cortexlens.toy import save_toy, train_toy
from cortexlens.toy.plugin import HEADS_TABLE
from cortexlens.tracking import register_toy

MODEL = "toy"  # the name params.yaml's `source: toy` resolves to


def run(ctx: StageContext) -> dict[str, Any]:
    study = ctx.study
    params = study.params.train_toy
    model, tokenizer, metrics = train_toy(params, resolve_device(study.params.device), progress=ctx.progress)
    # The training time goes to MLflow only: the model directory and the metrics file must not change
    # between two runs of the same params (dvc.lock records their hashes; git keeps the metrics).
    timings = {"train": round(metrics.pop("train_seconds"), 3)}
    save_toy(model, tokenizer, study.models_dir / MODEL, metrics)
    writer = ctx.results(produced={"model": study.models_dir / MODEL})
    if not writer.done("heads"):
        rows = [{"model": MODEL, **row, "n_sequences": params.score_sequences, "segment_length": params.score_length}
                for row in _head_rows(metrics)]
        writer.write_unit("heads", {HEADS_TABLE: {key: [r[key] for r in rows] for key in rows[0]}})
    writer.finish({"previous_token_score": metrics["previous_token_score"],
                   "prefix_matching_score": metrics["prefix_matching_score"]})
    register_toy(study, study.models_dir / MODEL, ctx.tracked)
    return {**metrics, "timings": timings}


def _head_rows(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for key, scores in metrics["heads"].items():  # "L0H1": {...}
        layer, head = key[1:].split("H")
        rows.append({"layer": int(layer), "head": int(head), **scores})
    return rows


def summary(m: dict[str, Any]) -> str:
    return (f"train_toy: second-copy accuracy {m['second_copy_accuracy']:.3f}, first-copy accuracy "
            f"{m['first_copy_accuracy']:.3f} (chance {m['chance_accuracy']:.4f}); previous-token head "
            f"{m['previous_token_head']} {m['previous_token_score']:.2f}, induction head {m['induction_head']} "
            f"prefix matching {m['prefix_matching_score']:.2f}, first-token head {m['first_token_head']} "
            f"{m['first_token_score']:.2f}")


STAGE = Stage("train_toy", run, summary=summary)

if __name__ == "__main__":
    STAGE.main()
