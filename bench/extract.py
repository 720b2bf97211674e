"""Extraction speed on MiniLM: ours vs a bare forward pass, and the nnsight peer vs ours.

    python bench/extract.py [--docs 1024] [--batch-size 32] [--rounds 3] [--torch-threads N]

All three run the same batches of the built-in corpus (tokenisation included in each):
  bare   : the forward pass alone, no hooks, nothing stored
  ours   : cortexlens.extraction.extract() of every residual-stream layer (embeddings + 6 block
           outputs) into zstd Parquet shards, with its default settings: documents batched by length
           within windows of 8 batches (stored back in corpus order), each window encoded between
           forward passes on every core
  nnsight: the same 7 modules collected with nnsight's `.save()` inside a trace, pad rows dropped
           and written through the same Parquet shard writer
Prints medians over interleaved rounds and the ratios ours/bare (target <= 1.10) and
nnsight/ours (target >= 1.15). Timings are noisy on shared machines; ratios from one run are the point.
--parts also times the pieces, so that what the store itself costs is plain: the hooked forward
alone, plus the gather of non-pad rows to numpy, ours with the writes on the forward's thread, the
bare forward over ours' length-sorted batches (`sorted`: ours/sorted is the store's own cost), and
ours in corpus order (`sort_window: 1`).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from bench.common import time_rounds
from cortexlens.config.schema import Extract
from cortexlens.data.corpus import generate_corpus
from cortexlens.data.sources import DocumentSource
from cortexlens.extraction.batches import accepts_position_ids, length_order, tokenize_batch
from cortexlens.extraction.runner import ModelIdentity, chunks, extract
from cortexlens.extraction.writers import ShardWriter, TokenDecoder
from cortexlens.models.hooks import HookPoint
from cortexlens.models.loading import ResolvedSource, load_hooked_model, minilm_dir


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=1024)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--compression", default="zstd", choices=["zstd", "lz4", "snappy", "none"])
    ap.add_argument("--torch-threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    ap.add_argument("--parts", action="store_true",
                    help="also time the pieces: hooks only, hooks + gather, synchronous writes, sorted bare, corpus order")
    args = ap.parse_args()
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)

    model = load_hooked_model("minilm", ResolvedSource("builtin", str(minilm_dir()), alias="minilm"),
                              torch.device("cpu"))
    docs = generate_corpus(args.docs, 0)
    source = DocumentSource("corpus", len(docs), "bench", lambda: iter(docs))
    settings = Extract(models=["minilm"], datasets=["corpus"], batch_size=args.batch_size, max_length=64,
                       pooling=[], shard_rows=1 << 30, compression=args.compression)
    points = [HookPoint("resid_pre", 0)] + [HookPoint("resid_post", layer) for layer in range(6)]
    identity = ModelIdentity("minilm", "minilm", "bench", "float32", None)
    position_ids = accepts_position_ids(model.model)
    scratch = Path(tempfile.mkdtemp(prefix="cortexlens-bench-"))

    def batches():
        for chunk in chunks(iter(docs), args.batch_size):
            yield tokenize_batch(chunk, model.tokenizer, 64, "right", model.device, position_ids)

    def sorted_batches():  # the batches ours runs: by length within windows of sort_window batches
        window = args.batch_size * settings.sort_window
        for chunk in chunks(iter(docs), window):
            order = length_order(chunk, model.tokenizer, 64)
            for start in range(0, len(chunk), args.batch_size):
                picked = [chunk[i] for i in order[start:start + args.batch_size]]
                yield tokenize_batch(picked, model.tokenizer, 64, "right", model.device, position_ids)

    def bare() -> None:
        with torch.no_grad():
            for batch in batches():
                model.model(**batch.inputs)

    def ours() -> None:
        shutil.rmtree(scratch / "ours", ignore_errors=True)
        extract(model, identity, source, points, settings, scratch / "ours", progress=False)

    def sorted_bare() -> None:
        with torch.no_grad():
            for batch in sorted_batches():
                model.model(**batch.inputs)

    def corpus_order() -> None:
        shutil.rmtree(scratch / "corpus", ignore_errors=True)
        extract(model, identity, source, points, settings.model_copy(update={"sort_window": 1}),
                scratch / "corpus", progress=False)

    import warnings

    warnings.filterwarnings("ignore", module="nnsight")  # its note about BERT's `.output` submodules
    from nnsight import NNsight

    traced = NNsight(model.model)
    layers = traced.encoder.layer

    def peer() -> None:
        shutil.rmtree(scratch / "peer", ignore_errors=True)
        writer = ShardWriter(scratch / "peer", 0, "float32", settings.compression, settings.row_group_rows, [],
                             TokenDecoder(model.tokenizer))
        with torch.no_grad():
            for batch in batches():
                saved: list = []  # nnsight runs the block body itself; it can fill, not create, locals
                with traced.trace(**batch.inputs):
                    saved.append(traced.embeddings.output.save())
                    for i in range(6):
                        saved.append(layers[i].output.save())
                writer.write(batch, dict(zip(points, saved)))
        writer.close()

    def hooks_only() -> None:
        with torch.inference_mode():
            for batch in batches():
                model.run_with_cache(batch.inputs, points)

    def gather() -> None:
        with torch.inference_mode():
            for batch in batches():
                for acts in model.run_with_cache(batch.inputs, points).values():
                    acts.flatten(0, 1).index_select(0, batch.rows).float().cpu().numpy()

    def synchronous() -> None:  # ours, with the writes on this thread instead of the writer thread
        shutil.rmtree(scratch / "sync", ignore_errors=True)
        writer = ShardWriter(scratch / "sync", 0, "float32", settings.compression, settings.row_group_rows, [],
                             TokenDecoder(model.tokenizer))
        with torch.inference_mode():
            for batch in batches():
                writer.write(batch, model.run_with_cache(batch.inputs, points))
        writer.close()

    contenders = {"bare": bare, "ours": ours, "nnsight": peer}
    if args.parts:
        contenders |= {"hooks": hooks_only, "gather": gather, "sync": synchronous, "sorted": sorted_bare,
                       "corpus": corpus_order}
    # Warm-up, once each: kernels, the allocator, and the page cache (on a VM the first write into
    # untouched memory costs several times a re-write; that is the machine, not the writer).
    for warm_up in contenders.values():
        warm_up()
    medians = time_rounds(contenders, args.rounds)
    n_tokens = sum(int(b.n_tokens.sum()) for b in batches())
    print(f"MiniLM, {args.docs} documents, {n_tokens} tokens, batch {args.batch_size}, "
          f"7 residual-stream points, torch threads {torch.get_num_threads()}, median of {args.rounds} rounds")
    for name, seconds in medians.items():
        print(f"  {name:<8} {seconds:7.2f} s  ({n_tokens / seconds:8.0f} tokens/s)")
    print(f"ours/bare    = {medians['ours'] / medians['bare']:.2f}   (target <= 1.10)")
    print(f"nnsight/ours = {medians['nnsight'] / medians['ours']:.2f}   (target >= 1.15)")
    for name in ("hooks", "gather", "sync", "sorted", "corpus"):
        if name in medians:
            print(f"{name}/bare{' ' * (7 - len(name))}= {medians[name] / medians['bare']:.2f}")
    if "sorted" in medians:
        print(f"ours/sorted  = {medians['ours'] / medians['sorted']:.2f}   (the store's own cost over the same batches)")
    shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
