"""Speed of a full (layer x position) activation-patching sweep: ours against a naive loop and TransformerLens.

    python bench/patch.py [--model-dir data/models/toy] [--prompts 16] [--rounds 3] [--batch-size 256]

On the trained toy model (train it first: `python -m stages.train_toy`), with the built-in induction
task (`--prompts` clean/corrupted pairs of 20 tokens), times as medians over interleaved rounds:
  ours : cortexlens.patching.activation.sweep over resid_pre at every layer x position (denoising):
         n_layers x n_pos x n_prompts patched runs, `--batch-size` rows per forward pass
  naive: the reference loop, one forward pass per patched run (cortexlens/patching/reference.py)
  tl   : transformer_lens.patching.get_act_patch_resid_pre on the same model booted through
         TransformerBridge (one forward pass of all prompts per (layer, position)), when it loads
and prints the ratios naive/ours (target >= 5) and tl/ours, after checking that all three give the
same logit differences (within 1e-4).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from bench.common import time_rounds
from cortexlens.data.corpus import corpus_vocabulary
from cortexlens.models.hooks import HookPoint
from cortexlens.models.loading import ResolvedSource, load_hooked_model
from cortexlens.patching import activation as act
from cortexlens.patching.prompts import induction_pairs
from cortexlens.patching.reference import naive_sweep
from cortexlens.patching.tasks import encode_task


def transformer_lens_sweep(model, task):
    """A callable running TransformerLens's get_act_patch_resid_pre, and its [n_prompts, layers, pos] LDs."""
    from transformer_lens.model_bridge import TransformerBridge
    from transformer_lens.patching import get_act_patch_resid_pre

    bridge = TransformerBridge.boot_transformers(model.model.name_or_path, hf_model=model.model,
                                                 tokenizer=model.tokenizer, device="cpu")
    clean, corrupted = task.clean["input_ids"], task.corrupted["input_ids"]
    _, clean_cache = bridge.run_with_cache(clean)
    rows = torch.arange(len(task))

    def metric(logits: torch.Tensor) -> torch.Tensor:  # mean LD over prompts, as a TL metric returns a scalar
        last = logits[rows, -1]
        return (last[rows, task.answer] - last[rows, task.distractor]).mean()

    def run() -> torch.Tensor:
        return get_act_patch_resid_pre(bridge, corrupted, clean_cache, metric)  # [layers, pos]
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", default="data/models/toy")
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    model = load_hooked_model("toy", ResolvedSource("local", args.model_dir), torch.device("cpu"))
    words = [w for w in corpus_vocabulary() if w.isalpha()]
    task = encode_task(model, "induction", induction_pairs(args.prompts, 10, words, 0), "bench")
    sites = [act.Site((HookPoint("resid_pre", layer),), positions=p)
             for layer in range(model.dims.n_layers) for p in task.positions()]
    ours = act.sweep(model, task, sites, "denoising", args.batch_size)
    naive = naive_sweep(model, task, sites)
    assert torch.allclose(ours, naive, atol=1e-4), float((ours - naive).abs().max())
    contenders = {"ours": lambda: act.sweep(model, task, sites, "denoising", args.batch_size),
                  "naive": lambda: naive_sweep(model, task, sites)}
    try:
        tl = transformer_lens_sweep(model, task)
        tl_result = tl().flatten()
        assert torch.allclose(tl_result.double(), ours.mean(1), atol=1e-4), float((tl_result - ours.mean(1)).abs().max())
        contenders["tl"] = tl
    except Exception as err:  # noqa: BLE001 -- report why TransformerLens is left out, and go on
        print(f"TransformerLens left out: {type(err).__name__}: {str(err).splitlines()[0][:200]}")
    times = time_rounds(contenders, args.rounds)
    runs = len(sites) * len(task)
    print(f"toy model, {len(sites)} sites x {len(task)} prompts = {runs} patched runs (threads {torch.get_num_threads()})")
    for name, seconds in times.items():
        print(f"  {name:6s} {seconds:8.3f} s   {runs / seconds:9.0f} runs/s")
    print(f"naive/ours = {times['naive'] / times['ours']:.1f}   (target >= 5)")
    if "tl" in times:
        print(f"tl/ours    = {times['tl'] / times['ours']:.1f}")


if __name__ == "__main__":
    main()
