"""train_toy: train the small GPT-2-architecture induction model and save it like any hub model.

    python -m stages.train_toy

Writes <paths.models>/toy (save_pretrained: safetensors, config, tokenizer) and the metrics file
dvc.yaml declares (held-out induction accuracy on first and second copies). With tracking on, the
run is recorded in MLflow and the model registered as `<study>-toy`.
"""

from __future__ import annotations

from typing import Any

from cortexlens.models.loading import resolve_device
from cortexlens.pipeline.stage import Stage, StageContext
from cortexlens.toy import save_toy, train_toy
from cortexlens.tracking import register_toy


def run(ctx: StageContext) -> dict[str, Any]:
    study = ctx.study
    model, tokenizer, metrics = train_toy(study.params.train_toy, resolve_device(study.params.device),
                                          progress=ctx.progress)
    # The training time goes to MLflow only: the model directory and the metrics file must not change
    # between two runs of the same params (dvc.lock records their hashes; git keeps the metrics).
    timings = {"train": round(metrics.pop("train_seconds"), 3)}
    save_toy(model, tokenizer, study.models_dir / "toy", metrics)
    register_toy(study, study.models_dir / "toy", ctx.tracked)
    return {**metrics, "timings": timings}


def summary(m: dict[str, Any]) -> str:
    return (f"train_toy: second-copy accuracy {m['second_copy_accuracy']:.3f}, first-copy accuracy "
            f"{m['first_copy_accuracy']:.3f} (chance {m['chance_accuracy']:.4f})")


STAGE = Stage("train_toy", run, summary=summary)

if __name__ == "__main__":
    STAGE.main()
