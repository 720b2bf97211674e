"""train_sae: sparse autoencoders and transcoders trained from the activation store.

    python -m stages.train_sae

For every entry of train_sae.saes: batches from the store's shuffling loader (training documents only),
the trainer of cortexlens.sae.train (checkpointed, resumable), the pinned metrics on the held-out
documents, the spliced forward pass (loss recovered and KL, or the final layer's change for encoders),
the SAELens-format folder <paths.models>/sae/<name>/, every nonzero held-out latent (`sae_features`),
head attribution for attn_z SAEs (`sae_heads`) and transcoder circuit edges (`sae_edges`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from cortexlens.errors import ConfigError
from cortexlens.features.sae import SAE, load_sae, sae_folder, save_sae
from cortexlens.models.hooks import HookPoint
from cortexlens.pipeline.stage import Stage, StageContext
from cortexlens.sae.analysis import attributions, connections, edge_rows, feature_rows, head_rows
from cortexlens.sae.model import CoderConfig
from cortexlens.sae.plugin import EDGES, SaeSpec, spec_points
from cortexlens.sae.splice import splice_metrics
from cortexlens.sae.train import TrainConfig, evaluate, train
from cortexlens.store import catalog
from cortexlens.store.documents import read_documents
from cortexlens.store.loader import ShufflingLoader
from cortexlens.store.reader import iter_activations


@dataclass(frozen=True)
class Plan:
    spec: SaeSpec
    x: HookPoint
    y: HookPoint  # == x for an SAE
    train_docs: np.ndarray
    held_docs: np.ndarray


def _plan(ctx: StageContext, i: int, spec: SaeSpec) -> Plan:
    key = f"train_sae.saes[{i}]"
    problems, x, y = spec_points(spec, key, ctx.study.model_info(spec.model).n_layers)
    if problems:
        raise ConfigError(*problems)
    ext = catalog.extraction(ctx.study.store_dir, spec.model, spec.dataset)
    for what, p in (("hook", x), ("target", y)):
        if p is not None:
            try:
                ext.point(p)
            except Exception:  # noqa: BLE001 - any lookup failure is the same user error
                raise ConfigError(f"{key}.{what}: {p.name} is not in the store for {spec.model}/{spec.dataset} "
                                  f"(run extract with it in extract.hooks)") from None
    docs = np.array(sorted(d.doc_id for d in read_documents(ctx.study.store_dir, spec.model, spec.dataset)))
    held = np.sort(np.random.default_rng(spec.seed).permutation(docs)[:max(1, round(spec.held_out * len(docs)))])
    return Plan(spec, x, y or x, np.setdiff1d(docs, held), held)


def _batches(ctx: StageContext, plan: Plan) -> tuple[ShufflingLoader, Any]:
    spec = plan.spec
    points = [plan.x] if plan.x == plan.y else [plan.x, plan.y]
    loader = ShufflingLoader(ctx.study.store_dir, spec.model, spec.dataset, points, batch_rows=spec.batch_rows,
                             buffer_rows=max(2 * spec.batch_rows, 32768), seed=spec.seed, docs=plan.train_docs)

    def batches(epoch: int, start: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for b in loader.epoch(epoch, start):
            x = b[plan.x]
            yield x, (x if plan.x == plan.y else b[plan.y])
    return loader, batches


def _held_out(ctx: StageContext, plan: Plan):
    spec = plan.spec
    for b in iter_activations(ctx.study.store_dir, spec.model, spec.dataset, [plan.x, plan.y], docs=plan.held_docs):
        x = b[plan.x]
        yield x, (x if plan.x == plan.y else b[plan.y])


def _train_one(ctx: StageContext, plan: Plan) -> tuple[SAE, dict[str, Any], dict[str, float]]:
    spec, section = plan.spec, ctx.study.params.train_sae
    loader, batches = _batches(ctx, plan)
    d_in, d_out = (loader.reader.widths[0], loader.reader.widths[-1])
    d_sae = spec.expansion * d_in
    if spec.arch in ("topk", "batchtopk") and (spec.k or 0) > d_sae:
        raise ConfigError(f"train_sae.saes: {spec.name}.k: k={spec.k} is larger than the dictionary ({d_sae})")
    cfg = CoderConfig(spec.arch, d_in, d_sae, d_out=d_out if plan.x != plan.y else None, k=spec.k, l1=spec.l1,
                      l0=spec.l0, skip=spec.skip, transcoder=plan.x != plan.y)
    tc = TrainConfig(steps=spec.steps, lr=spec.lr, seed=spec.seed, checkpoint_every=section.checkpoint_every,
                     aux_k=min(256, d_sae // 2))
    ckpt = ctx.results_dir / "_checkpoints" / f"{spec.name}-{ctx.fingerprint[:16]}.safetensors"
    device = "cuda" if section.device != "cpu" and torch.cuda.is_available() else "cpu"
    started = time.perf_counter()
    coder, summary = train(cfg, tc, batches, len(loader), checkpoint=ckpt, progress=ctx.progress, device=device)
    seconds = time.perf_counter() - started
    metrics = evaluate(coder, _held_out(ctx, plan)).as_dict()
    folder = save_sae(coder, sae_folder(ctx.study.models_dir, spec.name), plan.x.name, spec.model,
                      hook_name_out=plan.y.name if plan.x != plan.y else None,
                      metadata={"dataset": spec.dataset, "metrics": metrics, "training": summary,
                                "train_docs": len(plan.train_docs), "held_out_docs": len(plan.held_docs)})
    ckpt.unlink(missing_ok=True)
    timing = {"seconds": seconds, "tokens_per_second": summary["tokens"] / seconds if seconds else 0.0}
    return load_sae(folder, spec.name, f"train_sae: {spec.name}"), metrics, timing


def _splice(ctx: StageContext, plan: Plan, sae: SAE) -> dict[str, float]:
    spec, extract = plan.spec, ctx.study.params.extract
    held = set(plan.held_docs[:ctx.study.params.train_sae.splice_docs].tolist())
    docs = [d for d in read_documents(ctx.study.store_dir, spec.model, spec.dataset) if d.doc_id in held]
    loaded = ctx.load_model(spec.model)
    return splice_metrics(loaded.model, docs, sae, plan.x, plan.y, extract.max_length, extract.padding_side)


def run(ctx: StageContext) -> dict[str, Any]:
    section = ctx.study.params.train_sae
    plans = [_plan(ctx, i, spec) for i, spec in enumerate(section.saes)]  # every problem before any write
    (ctx.study.models_dir / "sae").mkdir(parents=True, exist_ok=True)  # dvc.yaml's out, even with no SAEs
    threads = torch.get_num_threads()
    torch.set_num_threads(section.threads)
    try:
        return _run(ctx, plans)
    finally:
        torch.set_num_threads(threads)


def _run(ctx: StageContext, plans: list[Plan]) -> dict[str, Any]:
    writer = ctx.results()
    saes: dict[str, SAE] = {}
    out: dict[str, Any] = {"saes": {}}
    timings: dict[str, float] = {}
    for plan in plans:
        spec, unit = plan.spec, f"sae={plan.spec.name}"
        folder = sae_folder(ctx.study.models_dir, spec.name)
        if writer.done(unit) and folder.is_dir():
            saes[spec.name] = load_sae(folder, spec.name, f"train_sae: {spec.name}")
            continue
        sae, metrics, timing = _train_one(ctx, plan)
        spliced = _splice(ctx, plan, sae)
        saes[spec.name] = sae
        timings |= {f"{spec.name}.{k}": v for k, v in timing.items()}
        row = {"sae_id": spec.name, "model": spec.model, "hook": plan.x.hook, "layer": plan.x.layer,
               "arch": spec.arch, "d_in": sae.d_in, "d_sae": sae.d_sae, "l0": metrics["l0"], "fvu": metrics["fvu"],
               "dead_frac": metrics["dead_frac"], "loss_recovered": spliced.get("loss_recovered"),
               "target_hook": plan.y.hook if plan.y != plan.x else None, "dataset": spec.dataset,
               "explained_variance": metrics["explained_variance"], "dense_frac": metrics["dense_frac"],
               "eval_tokens": metrics["tokens"], "k": spec.k, "kl": spliced.get("kl"),
               "ce_clean": spliced.get("ce_clean"), "ce_zero_ablation": spliced.get("ce_zero_ablation"),
               "ce_spliced": spliced.get("ce_spliced"), "final_cosine": spliced.get("final_cosine"),
               "final_relative_change": spliced.get("final_relative_change"), "steps": spec.steps}
        tokens = ((b.doc_id, b.pos, b[plan.x]) for b in iter_activations(
            ctx.study.store_dir, spec.model, spec.dataset, plan.x, docs=plan.held_docs))
        tables = {"sae_runs": [row], "sae_features": feature_rows(sae, tokens, spec.dataset)}
        if plan.x.hook == "attn_z":
            tables["sae_heads"] = head_rows(sae, ctx.study.model_info(spec.model).dims.n_heads)
        writer.write_unit(unit, {name: _columns(rows) for name, rows in tables.items()})
    if not writer.done("edges"):
        writer.write_unit("edges", {"sae_edges": _columns(_edges(ctx, saes, plans), EDGES)})
    runs = writer.read("sae_runs")
    runs = runs.to_pylist() if runs is not None else []  # `saes: []` trains nothing (a study without SAEs)
    for r in runs:
        out["saes"][r["sae_id"]] = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()
                                    if k in ("arch", "hook", "layer", "d_sae", "fvu", "l0", "dead_frac", "dense_frac",
                                             "loss_recovered", "kl", "final_cosine")}
    out["n_saes"] = len(runs)  # a study without SAEs still has a metric (`dvc exp show` shows no empty file)
    writer.finish({"saes": len(plans)})
    _register(ctx, plans, runs)
    return {**out, "timings": timings}


TYPES = {"VARCHAR": pa.string(), "INTEGER": pa.int32(), "DOUBLE": pa.float64()}
PER_TARGET = 5  # strongest sources kept per downstream latent
PROMPTS = 4  # held-out documents whose input-dependent attributions are stored


def _edges(ctx: StageContext, saes: dict[str, SAE], plans: list[Plan]) -> list[dict[str, Any]]:
    """Connections and attributions between transcoders of one model and dataset at layers L < L'."""
    coders = [p for p in plans if p.x != p.y]
    rows: list[dict[str, Any]] = []
    for up in coders:
        for down in coders:
            if (up.spec.model, up.spec.dataset) != (down.spec.model, down.spec.dataset) or up.x.layer >= down.x.layer:
                continue
            a, b = saes[up.spec.name], saes[down.spec.name]
            with torch.no_grad():
                rows += edge_rows(a.sae_id, b.sae_id, "connection", -1, connections(a, b), PER_TARGET)
                prompts = down.held_docs[:PROMPTS]
                for batch in iter_activations(ctx.study.store_dir, up.spec.model, up.spec.dataset, [up.x, down.x],
                                              docs=prompts):
                    for doc in np.unique(batch.doc_id):
                        m = batch.doc_id == doc
                        scores = attributions(a, b, torch.from_numpy(batch[up.x][m]), torch.from_numpy(batch[down.x][m]))
                        rows += edge_rows(a.sae_id, b.sae_id, "attribution", int(doc), scores, PER_TARGET)
    return rows


def _columns(rows: list[dict[str, Any]], empty: dict[str, str] | None = None) -> dict[str, list[Any]] | pa.Table:
    """Rows -> columns; no rows -> an empty table of the view's contracted columns (`empty`)."""
    if not rows and empty:
        return pa.table({k: pa.array([], type=TYPES[t]) for k, t in empty.items()})
    keys = list(rows[0]) if rows else []
    return {k: [r[k] for r in rows] for k in keys}


def _register(ctx: StageContext, plans: list[Plan], runs: list[dict[str, Any]]) -> None:
    """Per SAE: an MLflow run (a child of the stage's) with its spec and held-out metrics, and the
    registered model `<study>-sae-<name>` (alias tracking.alias), a pyfunc that encodes activations."""
    from cortexlens.tracking import TrackedRun

    if not isinstance(ctx.tracked, TrackedRun):
        return
    from cortexlens.tracking.registry import register_pyfunc

    parent, code = ctx.tracked, Path(__import__("cortexlens.tracking.sae_pyfunc", fromlist=["x"]).__file__)
    experiment = parent.client.get_run(parent.run_id).info.experiment_id
    by_id = {r["sae_id"]: r for r in runs}
    for plan in plans:
        name = plan.spec.name
        child_info = parent.client.create_run(experiment, run_name=f"train_sae/{name}",
                                              tags={"mlflow.parentRunId": parent.run_id, "cortexlens.sae": name})
        child = TrackedRun(parent.client, child_info.info.run_id, parent.target)
        child.log_params(plan.spec.model_dump(mode="json"))
        child.log_metrics({k: v for k, v in by_id[name].items() if isinstance(v, float | int) and not isinstance(v, bool)})
        if ctx.study.params.train_sae.register_saes:
            folder = sae_folder(ctx.study.models_dir, name)
            example = np.zeros((2, load_sae(folder, name, "train_sae").d_in), np.float32)
            register_pyfunc(child, f"{ctx.study.params.study}-sae-{name}", ctx.study.params.tracking.alias, "sae",
                            code, {"sae": str(folder)}, example, ["numpy", "pandas", "safetensors"])
        parent.client.set_terminated(child_info.info.run_id)


def summary(m: dict[str, Any]) -> str:
    parts = [f"{name} {s['arch']} FVU {s['fvu']:.3f} L0 {s['l0']:.1f} dead {s['dead_frac']:.1%}"
             + (f" loss recovered {s['loss_recovered']:.2f}" if s.get("loss_recovered") is not None else "")
             for name, s in m["saes"].items()]
    return "train_sae: " + "; ".join(parts)


STAGE = Stage("train_sae", run, require=("train_sae", "extract"), summary=summary)

if __name__ == "__main__":
    STAGE.main()
