"""sparsity: how sparse one model's MLP neurons are, and what enforcing sparsity costs.

    python -m stages.sparsity --model minilm

Per layer: active fractions (distribution, by position, by token frequency) and CETT thresholds,
from stored mlp_post activations when the extraction has them, else computed from the model. Per
model: the loss (or representation) change as CETT truncation and top-k are applied in the forward
pass, and PPL-p% sparsity. Writes <store>/sparsity/<model>/ (the `sparsity` view) and the metrics
file dvc.yaml declares.
"""

from __future__ import annotations

from typing import Any

from tqdm.auto import tqdm

from cortexlens.data.sources import open_dataset
from cortexlens.extraction.live import encoded_batches
from cortexlens.extraction.source import ActivationSource
from cortexlens.models.hooks import HookPoint
from cortexlens.pipeline.stage import Stage, StageContext, only_own_model_dirs
from cortexlens.sparsity.activity import rule_for
from cortexlens.sparsity.cett import CettThreshold
from cortexlens.sparsity.measure import measure_interventions, measure_layer, rows_table
from cortexlens.sparsity.plugin import dataset_of

TABLE = "sparsity"


def run(ctx: StageContext) -> dict[str, Any]:
    study, name = ctx.study, ctx.item["model"]
    section, extract = study.params.sparsity, study.params.extract
    dataset = dataset_of(study, name)
    model = ctx.load_model(name).model
    n = model.dims.n_layers
    layers = list(range(n)) if section.layers == "all" else sorted({layer % n for layer in section.layers})
    rule = rule_for(model.mlp_activation, section.threshold)
    source = ActivationSource(study.store_dir, model, dataset,
                              lambda: open_dataset(dataset, study.params.datasets[dataset], study.root),
                              extract.max_length, extract.padding_side, section.batch_size, section.max_docs)
    writer = ctx.results()
    thresholds: dict[int, dict[float, CettThreshold]] = {}
    bar = tqdm(total=len(layers) + 1, desc=f"sparsity {name}/{dataset}", unit="step", disable=not ctx.progress)
    for layer in layers:
        bar.set_postfix_str(f"layer {layer}")
        if not writer.done(f"layer={layer}"):
            w_out = model.mlp_output_weights(layer)[0].detach().float()  # [d_mlp, d_model]
            batches = source.batches(HookPoint("mlp_post", layer))
            measured = measure_layer(layer, batches, source.token_ids, w_out, rule, section)
            writer.write_unit(f"layer={layer}", {TABLE: rows_table(name, dataset, rule.label, measured.rows)})
        thresholds[layer] = _thresholds(writer, layer)
        bar.update()
    bar.set_postfix_str("interventions")
    if not writer.done("model"):
        eval_inputs = encoded_batches(model, source.documents()[:section.eval_docs], extract.max_length,
                                      extract.padding_side, section.batch_size)
        rows = measure_interventions(model, eval_inputs, thresholds, section)
        writer.write_unit("model", {TABLE: rows_table(name, dataset, rule.label, rows)})
    bar.update()
    bar.close()
    kind = "store" if source.stored(HookPoint("mlp_post", layers[0])) else "model"
    metrics = _metrics(writer, name, dataset, kind, rule.label, section.cett_target)
    writer.finish(metrics)
    return metrics


def _thresholds(writer, layer: int) -> dict[float, CettThreshold]:
    """The CETT thresholds a layer's unit wrote (read back, so a resumed run uses the same eps)."""
    rows = writer.read(TABLE).to_pylist()
    found: dict[float, dict[str, float]] = {}
    for r in rows:
        if r["layer"] == layer and r["metric"] in ("cett", "cett_eps", "cett_activation_ratio"):
            found.setdefault(float(r["param"].removeprefix("target=")), {})[r["metric"]] = r["value"]
    return {t: CettThreshold(t, v["cett_eps"], v["cett"], v["cett_activation_ratio"]) for t, v in found.items()}


def _metrics(writer, model: str, dataset: str, source: str, rule: str, target: float) -> dict[str, Any]:
    rows = writer.read(TABLE).to_pylist()
    per_layer: dict[str, dict[str, float]] = {}
    summary: dict[str, float] = {}
    for r in rows:
        if r["layer"] is None:
            if r["metric"].endswith("_p_sparsity"):
                summary[r["metric"]] = round(r["value"], 6)
        elif (r["metric"], r["param"]) == ("active_fraction", "mean"):
            per_layer.setdefault(str(r["layer"]), {})["active_fraction"] = round(r["value"], 6)
        elif (r["metric"], r["param"]) == ("cett_activation_ratio", f"target={target:g}"):
            per_layer.setdefault(str(r["layer"]), {})["cett_activation_ratio"] = round(r["value"], 6)
    return {"model": model, "dataset": dataset, "source": source, "rule": rule, "cett_target": target,
            "layers": per_layer, **summary}


def summary(m: dict[str, Any]) -> str:
    ratios = ", ".join(f"{v['cett_activation_ratio']:.2f}" for v in m["layers"].values())
    p = next((f"{k} {v:.2f}" for k, v in m.items() if k.endswith("_p_sparsity")), "")
    return f"sparsity {m['model']}/{m['dataset']}: activation ratio at CETT {m['cett_target']:g} by layer [{ratios}]; {p}"


STAGE = Stage("sparsity", run, require=("sparsity", "extract"), summary=summary, refine=only_own_model_dirs)

if __name__ == "__main__":
    STAGE.main()
