"""train_toy: train the small GPT-2-architecture induction model and save it like any hub model.

    python -m stages.train_toy

Writes <paths.models>/toy (save_pretrained: safetensors, config, tokenizer) and
reports/metrics/train_toy.json (held-out induction accuracy on first and second copies). With tracking
on, the run is recorded in MLflow and the model registered as `<study>-toy`.
"""

from __future__ import annotations

from typing import Any

from cortexlens.config import Study, load_study
from cortexlens.models.loading import resolve_device
from cortexlens.toy import save_toy, train_toy
from cortexlens.tracking import register_toy, stage_run
from stages.common import metrics_file, parser, stage_main, write_metrics


def run(study: Study, progress: bool = True) -> dict[str, Any]:
    params = study.params.train_toy
    tracked_params = {"train_toy": params.model_dump(mode="json"), "device": study.params.device}
    with stage_run(study, "train_toy", params=tracked_params) as tracked:
        model, tokenizer, metrics = train_toy(params, resolve_device(study.params.device), progress=progress)
        save_toy(model, tokenizer, study.models_dir / "toy", metrics)
        write_metrics(metrics_file(study.reports_dir, "train_toy"), metrics)
        tracked.log_metrics(metrics)
        register_toy(study, study.models_dir / "toy", tracked)
    return metrics


@stage_main
def main(argv: list[str] | None = None) -> None:
    args = parser(__doc__.splitlines()[0]).parse_args(argv)
    study = load_study(args.params)
    metrics = run(study, progress=not args.no_progress)
    print(f"train_toy: second-copy accuracy {metrics['second_copy_accuracy']:.3f}, first-copy accuracy "
          f"{metrics['first_copy_accuracy']:.3f} (chance {metrics['chance_accuracy']:.4f}) -> "
          f"{study.models_dir / 'toy'}")


if __name__ == "__main__":
    main()
