"""train_facts: train the fact-recall model (the toy architecture on a seeded fact table) for causal tracing.

    python -m stages.train_facts

Writes <paths.models>/facts (save_pretrained: safetensors, config, tokenizer, and `facts.json`, the
fact table it learnt) and the metrics file dvc.yaml declares (recall on trained facts and, as the
control, on subjects it never saw). With tracking on, the model is registered as `<study>-facts`.
"""

from __future__ import annotations

from typing import Any

from cortexlens.models.loading import resolve_device
from cortexlens.pipeline.stage import Stage, StageContext
from cortexlens.toy import save_toy
from cortexlens.toy.recall import train_facts
from cortexlens.tracking import register_toy

MODEL = "facts"  # the name params.yaml's `source: facts` resolves to


def run(ctx: StageContext) -> dict[str, Any]:
    study = ctx.study
    model, tokenizer, table, metrics = train_facts(study.params.train_facts, resolve_device(study.params.device),
                                                   progress=ctx.progress)
    # The training time goes to MLflow only: the model directory and the metrics file must not change
    # between two runs of the same params (dvc.lock records their hashes; git keeps the metrics).
    timings = {"train": round(metrics.pop("train_seconds"), 3)}
    save_toy(model, tokenizer, study.models_dir / MODEL, metrics, extra=table.save)
    register_toy(study, study.models_dir / MODEL, ctx.tracked, model=MODEL, example=[table.trained[0].prompt])
    return {**metrics, "timings": timings}


def summary(m: dict[str, Any]) -> str:
    unseen = "n/a" if m["unseen_accuracy"] is None else f"{m['unseen_accuracy']:.3f}"
    return (f"train_facts: recall {m['recall_accuracy']:.3f} of {m['n_facts']} trained facts; unseen subjects "
            f"{unseen} (base rate {m['chance_accuracy']:.3f})")


STAGE = Stage("train_facts", run, summary=summary)

if __name__ == "__main__":
    STAGE.main()
