"""extract: run every dataset through one model and store the hooked activations.

    python -m stages.extract --model minilm

Writes <store>/extract/model=<model>/dataset=<d>/ for each dataset of `extract.datasets`, and
reports/metrics/extract-<model>.json. Resumes an interrupted run. With tracking on, the run is
recorded in MLflow as `extract@<model>` with the model's and datasets' fingerprints.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch

from cortexlens.config import Study, load_study
from cortexlens.data.sources import open_dataset
from cortexlens.errors import ConfigError
from cortexlens.extraction.runner import ModelIdentity, extract
from cortexlens.models.loading import fingerprint, load_hooked_model, resolve_device
from cortexlens.store import layout
from cortexlens.tracking import stage_run
from stages.common import metrics_file, parser, stage_main, write_metrics


def run(study: Study, model_name: str, progress: bool = True) -> dict[str, Any]:
    """Extract one model over all datasets; returns the stage metrics."""
    params = study.params.extract
    if params is None:
        raise ConfigError("extract: section missing in params.yaml")
    if model_name not in params.models:
        raise ConfigError(f"--model: {model_name!r} is not in extract.models ({', '.join(params.models)})")
    with stage_run(study, "extract", model_name, params=_tracked_params(study, model_name)) as tracked:
        points = study.hook_points(model_name)
        # Open every dataset before loading the model: a bad file fails before anything is written.
        sources = [open_dataset(name, study.params.datasets[name], study.root) for name in params.datasets]
        tracked.log_inputs({f"datasets.{source.name}": source.fingerprint for source in sources})
        spec = study.params.models[model_name]
        resolved = study.model_source(model_name)
        torch.manual_seed(study.params.seed)
        model = load_hooked_model(model_name, resolved, resolve_device(study.params.device), spec.dtype,
                                  spec.attn_implementation)
        identity = ModelIdentity(model_name, spec.source, fingerprint(resolved, model.config),
                                 spec.dtype, spec.attn_implementation)
        tracked.log_inputs({f"models.{model_name}": identity.revision})
        model_dir = layout.model_dir(study.store_dir, model_name)
        _remove_unlisted_datasets(model_dir, params.datasets)
        metrics: dict[str, Any] = {"model": model_name, "hook_points": len(points), "datasets": {}}
        for source in sources:
            out_dir = layout.extraction_dir(study.store_dir, model_name, source.name)
            manifest = extract(model, identity, source, points, params, out_dir, progress=progress)
            metrics["datasets"][source.name] = {
                "documents": manifest["dataset"]["n_docs"], "tokens": manifest["rows"].get("tokens", 0),
                "activation_rows": manifest["rows"].get("activations", 0), "shards": len(manifest["shards"]),
                "truncated": manifest["n_truncated"], "seconds": manifest["seconds"],
            }
            tracked.set_tags({f"manifest.{source.name}": manifest["fingerprint"]})
            tracked.log_dict(manifest, f"manifests/{source.name}.json")
        write_metrics(metrics_file(study.reports_dir, "extract", model_name), metrics)
        tracked.log_metrics(metrics)
    return metrics


def _tracked_params(study: Study, model_name: str) -> dict[str, Any]:
    """The params dvc.yaml lists for this stage (datasets: only those extracted), as JSON values."""
    p = study.params
    assert p.extract is not None
    return {
        "extract": p.extract.model_dump(mode="json"),
        "models": {model_name: p.models[model_name].model_dump(mode="json")},
        "datasets": {name: p.datasets[name].model_dump(mode="json") for name in p.extract.datasets},
        "device": p.device,
    }


def _remove_unlisted_datasets(model_dir: Path, datasets: list[str]) -> None:
    """This stage owns the model's directory: extractions of datasets no longer listed are stale."""
    for path in model_dir.glob("dataset=*"):
        if path.name.removeprefix("dataset=") not in datasets:
            shutil.rmtree(path)


@stage_main
def main(argv: list[str] | None = None) -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="a name from extract.models")
    args = p.parse_args(argv)
    study = load_study(args.params, require=["extract"])
    metrics = run(study, args.model, progress=not args.no_progress)
    for name, m in metrics["datasets"].items():
        print(f"extract {args.model}/{name}: {m['documents']} documents, {m['tokens']} tokens, "
              f"{m['activation_rows']} activation rows in {m['shards']} shard(s) -> "
              f"{layout.extraction_dir(study.store_dir, args.model, name)}")


if __name__ == "__main__":
    main()
