"""extract: run every dataset through one model and store the hooked activations.

    python -m stages.extract --model minilm

Writes <store>/extract/model=<model>/dataset=<d>/ for each dataset of `extract.datasets` (or the
model's `extract.model_datasets` entry), and the
metrics file dvc.yaml declares. Resumes an interrupted run. With tracking on, the run is recorded in
MLflow as `extract@<model>` with the model's and datasets' fingerprints.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from cortexlens.data.sources import open_dataset
from cortexlens.errors import ConfigError
from cortexlens.extraction.runner import extract
from cortexlens.pipeline.stage import Stage, StageContext, only_own_model_dirs
from cortexlens.store import layout


def run(ctx: StageContext) -> dict[str, Any]:
    """Extract one model over all datasets; returns the stage metrics."""
    study, model_name = ctx.study, ctx.item["model"]
    params = study.params.extract
    if model_name not in params.models:
        raise ConfigError(f"--model: {model_name!r} is not in extract.models ({', '.join(params.models)})")
    points = study.hook_points(model_name)
    datasets = params.datasets_of(model_name)
    # Open every dataset before loading the model: a bad file fails before anything is written.
    sources = [open_dataset(name, study.params.datasets[name], study.root) for name in datasets]
    ctx.tracked.log_inputs({f"datasets.{source.name}": source.fingerprint for source in sources})
    loaded = ctx.load_model(model_name)
    model_dir = layout.model_dir(study.store_dir, model_name)
    _remove_unlisted_datasets(model_dir, datasets)
    metrics: dict[str, Any] = {"model": model_name, "hook_points": len(points), "datasets": {}, "timings": {}}
    for source in sources:
        out_dir = layout.extraction_dir(study.store_dir, model_name, source.name)
        started = time.perf_counter()
        manifest = extract(loaded.model, loaded.identity, source, points, params, out_dir, progress=ctx.progress)
        metrics["timings"][source.name] = round(time.perf_counter() - started, 3)
        metrics["datasets"][source.name] = {
            "documents": manifest["dataset"]["n_docs"], "tokens": manifest["rows"].get("tokens", 0),
            "activation_rows": manifest["rows"].get("activations", 0), "shards": len(manifest["shards"]),
            "truncated": manifest["n_truncated"],
        }
        ctx.tracked.set_tags({f"manifest.{source.name}": manifest["fingerprint"]})
        ctx.tracked.log_dict(manifest, f"manifests/{source.name}.json")
    return metrics


def _remove_unlisted_datasets(model_dir: Path, datasets: list[str]) -> None:
    """This stage owns the model's directory: extractions of datasets no longer listed are stale."""
    for path in model_dir.glob("dataset=*"):
        if path.name.removeprefix("dataset=") not in datasets:
            shutil.rmtree(path)


def summary(metrics: dict[str, Any]) -> str:
    return "; ".join(f"extract {metrics['model']}/{name}: {m['documents']} documents, {m['tokens']} tokens, "
                     f"{m['activation_rows']} activation rows in {m['shards']} shard(s)"
                     for name, m in metrics["datasets"].items())


STAGE = Stage("extract", run, require=("extract",), summary=summary, refine=only_own_model_dirs)

if __name__ == "__main__":
    STAGE.main()
