"""The patch stage's metrics: the numbers the acceptance points ask for, read back from the rows."""

from __future__ import annotations

from typing import Any

import numpy as np


def _pearson(a: list[float], b: list[float]) -> float | None:
    if len(a) < 3 or np.std(a) == 0 or np.std(b) == 0:
        return None
    return float(np.corrcoef(a, b)[0, 1])


def _spearman(a: list[float], b: list[float]) -> float | None:
    rank = lambda x: np.argsort(np.argsort(x)).astype(float)
    return _pearson(list(rank(a)), list(rank(b)))


def _heads(rows: list[dict], method: str, mode: str, pos_final: bool) -> dict[tuple[int, int], dict]:
    out = {}
    for r in rows:
        if (r["method"] == method and r["mode"] == mode and r["hook"] == "attn_z" and r["direction"] is None
                and (r["pos"] is not None) == pos_final):
            out[(r["layer"], r["head"])] = r
    return out


def _task_metrics(rows: list[dict]) -> dict[str, Any]:
    first = rows[0]
    out: dict[str, Any] = {"clean_logit_diff": first["clean_logit_diff"],
                           "corrupted_logit_diff": first["corrupted_logit_diff"], "n_prompts": first["n_prompts"]}
    final = _heads(rows, "activation", "denoising", True)
    if final:
        (layer, head), top = max(final.items(), key=lambda kv: kv[1]["effect"])
        out.update(top_head=f"L{layer}H{head}", top_head_effect=top["effect"],
                   top_head_prefix_matching=top["prefix_matching"])
        by_match = sorted(final, key=lambda k: -(final[k]["prefix_matching"] or 0))
        k = sum(1 for r in final.values() if (r["prefix_matching"] or 0) >= 0.5)
        by_effect = sorted(final, key=lambda k_: -final[k_]["effect"])
        out["induction_heads"] = k
        out["spearman_effect_vs_prefix_matching"] = _spearman([final[h]["effect"] for h in final],
                                                              [final[h]["prefix_matching"] or 0 for h in final])
        if k:
            out["top_heads_are_highest_prefix_matching"] = set(by_effect[:k]) == set(by_match[:k])
    ablated = _heads(rows, "activation", "mean_ablation", False)
    if ablated:
        prev_key = max(ablated, key=lambda k_: ablated[k_]["previous_token"] or 0)
        r = ablated[prev_key]
        out.update(previous_token_head=f"L{prev_key[0]}H{prev_key[1]}", previous_token_score=r["previous_token"],
                   ablation_fraction_removed=1 - r["logit_diff"] / r["clean_logit_diff"])
    out["attribution_vs_exact"] = _correlations(rows)
    traces = [r for r in rows if r["method"] == "causal_tracing"]
    if traces:
        peak = max(traces, key=lambda r: r["effect"])
        out["tracing_peak"] = {k: peak[k] for k in ("kind", "layer", "pos", "token", "effect")}
        out["tracing_clean_prob"], out["tracing_noised_prob"] = peak["clean_prob"], peak["corrupted_prob"]
        out["tracing_peak_by_kind"] = {
            kind: {k: best[k] for k in ("layer", "pos", "token", "effect")}
            for kind in sorted({r["kind"] for r in traces})
            for best in [max((r for r in traces if r["kind"] == kind), key=lambda r: r["effect"])]}
    subspace = {}
    for r in rows:
        if r["method"] == "subspace":
            entry = subspace.setdefault(r["direction"] + (f"/{r['split']}" if r["split"] else ""), {})
            entry[f"effect_{r['part']}"] = r["effect"]
            if r["part"] == "full":
                entry["illusion"] = r["illusion"]
    if subspace:
        out["subspace"] = subspace
    return out


def _correlations(rows: list[dict]) -> dict[str, float | None]:
    """Pearson r between attribution and exact (denoising) effects over the same sites, per hook."""
    exact = {(r["hook"], r["layer"], r["pos"], r["head"]): r["effect"] for r in rows
             if r["method"] == "activation" and r["mode"] == "denoising"}
    pairs: dict[str, tuple[list[float], list[float]]] = {}
    for r in rows:
        key = (r["hook"], r["layer"], r["pos"], r["head"])
        if r["method"] == "attribution" and r["mode"] == "denoising" and key in exact:
            a, b = pairs.setdefault(r["hook"], ([], []))
            a.append(r["effect"])
            b.append(exact[key])
    return {hook: _pearson(a, b) for hook, (a, b) in sorted(pairs.items())}


def summarise(model: str, rows: list[dict]) -> dict[str, Any]:
    tasks = sorted({r["task"] for r in rows})
    return {"model": model, "rows": len(rows),
            "tasks": {t: _task_metrics([r for r in rows if r["task"] == t]) for t in tasks}}
