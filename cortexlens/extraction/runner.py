"""Stream a document source through a hooked model into Parquet shards, resumably.

Documents go in windows: fixed chunks of `sort_window * batch_size` documents from document 0. Within a
window they are batched by token count, so a batch pads little (the forward pass is what extraction
costs), and the window's rows are stored back in corpus order. Shards are ranges of whole windows: a
shard closes at the first window boundary past `shard_rows` token rows, so shard boundaries are a
function of the data alone and an interrupted run resumes at exactly the same place.
Memory is bounded by one window's activations plus one row group per file, whatever the corpus size.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from cortexlens.config.schema import Extract
from cortexlens.data.corpus import Document
from cortexlens.data.sources import DocumentSource
from cortexlens.extraction.background import BackgroundWriter
from cortexlens.extraction.batches import accepts_position_ids, length_order, tokenize_batch
from cortexlens.extraction.progress import Progress, ShardDone
from cortexlens.extraction.writers import ShardWriter, TokenDecoder
from cortexlens.models.hooked import HookedModel
from cortexlens.models.hooks import HookPoint
from cortexlens.models.identity import ModelIdentity  # also imported from here (its former home)

FORMAT = "cortexlens.extraction/1"
SETTINGS = ("batch_size", "max_length", "padding_side", "store_dtype", "sort_window", "shard_rows",
            "row_group_rows", "pooling", "compression")


def chunks(items: Iterator[Document], size: int) -> Iterator[list[Document]]:
    while batch := list(islice(items, size)):
        yield batch


def effective_max_length(model: HookedModel, settings: Extract) -> int:
    """`max_length`, capped at the model's context: a 32-position toy model cannot read 64 tokens."""
    from cortexlens.extraction.live import capped_length

    return capped_length(model, settings.max_length)


def plan_fingerprint(identity: ModelIdentity, source: DocumentSource, points: list[HookPoint],
                     settings: Extract, device: torch.device) -> str:
    plan = {"format": FORMAT, "model": asdict(identity), "dataset": source.fingerprint,
            "points": [p.name for p in points], "settings": {k: getattr(settings, k) for k in SETTINGS},
            "device": device.type}
    return hashlib.sha256(json.dumps(plan, sort_keys=True).encode()).hexdigest()


def extract(model: HookedModel, identity: ModelIdentity, source: DocumentSource, points: list[HookPoint],
            settings: Extract, out_dir: Path, progress: bool = True) -> dict[str, Any]:
    """Write activations of `points` for every document of `source` under `out_dir`; return the manifest."""
    fingerprint = plan_fingerprint(identity, source, points, settings, model.device)
    book = Progress(out_dir, fingerprint)
    if (manifest := book.complete_manifest()) is not None:
        return manifest
    done = book.start()
    doc_start = done[-1].doc_end if done else 0
    bar = tqdm(total=len(source), initial=doc_start, unit="doc", disable=not progress,
               desc=f"extract {identity.name}/{source.name}", mininterval=1.0)
    with BackgroundWriter() as background, ThreadPoolExecutor(_encoders(), "cortexlens-encode") as pool:
        _run_shards(model, source, points, settings, out_dir, book, done, doc_start, background, pool, bar)
        background.wait()
    bar.close()
    manifest = _manifest(identity, model, source, points, settings, fingerprint, done)
    book.finish(manifest)
    return manifest


def _encoders() -> int:
    """Threads that encode a window's files: as many as the forward pass uses."""
    return max(1, torch.get_num_threads())


def _run_shards(model: HookedModel, source: DocumentSource, points: list[HookPoint], settings: Extract,
                out_dir: Path, book: Progress, done: list[ShardDone], doc_start: int,
                background: BackgroundWriter, pool: ThreadPoolExecutor, bar: tqdm) -> None:
    """Forward passes on this thread; encoding, publishing and progress records on `background`.

    On a GPU the encoding of window k overlaps the forward of window k+1. On CPU the forward already
    keeps every core busy, and a writer thread beside it preempts one of torch's threads, so that the
    whole parallel region waits for it (bench/extract.py: the store cost 1.5x its own CPU time that way);
    there the window is encoded between forwards, on every core.
    """
    overlap = model.device.type != "cpu"
    use_position_ids = accepts_position_ids(model.model)
    decoder = TokenDecoder(model.tokenizer)
    max_length = effective_max_length(model, settings)
    writer: ShardWriter | None = None
    next_shard, shard_doc_start = len(done), doc_start
    try:
        window = settings.batch_size * settings.sort_window
        for docs in chunks(islice(iter(source), doc_start, None), window):
            if writer is None:
                writer = ShardWriter(out_dir, next_shard, settings.store_dtype, settings.compression,
                                     settings.row_group_rows, settings.pooling, decoder, run=background.submit,
                                     pool=pool)
                shard_doc_start = doc_start
            order = length_order(docs, model.tokenizer, max_length) if settings.sort_window > 1 \
                else np.arange(len(docs))
            for start in range(0, len(docs), settings.batch_size):
                slots = order[start:start + settings.batch_size]
                batch = tokenize_batch([docs[i] for i in slots], model.tokenizer, max_length,
                                       settings.padding_side, model.device, use_position_ids)
                with torch.inference_mode():  # the cache goes straight to numpy: no autograd bookkeeping
                    writer.add(batch, model.run_with_cache(batch.inputs, points), slots)
                bar.update(len(slots))
            writer.flush_window()
            if not overlap:
                background.wait()
            doc_start += len(docs)
            if writer.rows >= settings.shard_rows:
                background.submit(_close, book, writer, shard_doc_start, doc_start, done)
                writer, next_shard = None, next_shard + 1
        if writer is not None:
            background.submit(_close, book, writer, shard_doc_start, doc_start, done)
            writer = None
    except BaseException:
        if writer is not None:  # the unfinished shard: let queued appends end, then drop its files
            background.submit(writer.abort)
        raise


def _close(book: Progress, writer: ShardWriter, doc_start: int, doc_end: int, done: list[ShardDone]) -> None:
    shard = ShardDone.of(writer.shard, doc_start, doc_end, writer.rows, writer.truncated, writer.widths,
                         writer.close())
    book.record(shard)
    done.append(shard)


def _manifest(identity: ModelIdentity, model: HookedModel, source: DocumentSource, points: list[HookPoint],
              settings: Extract, fingerprint: str, done: list[ShardDone]) -> dict[str, Any]:
    """What the extraction is, deterministically: no timings, no absolute paths (the manifest is part of
    the stage's DVC output, whose hash dvc.lock records; timings go to MLflow)."""
    import transformers

    import cortexlens

    widths = {name: width for shard in done for name, width in shard.widths.items()}
    tables: dict[str, int] = {}
    for shard in done:
        for rel, rec in shard.files.items():
            table = rel.split("/", 1)[0]
            tables[table] = tables.get(table, 0) + rec["rows"]
    tok = model.tokenizer
    return {
        "format": FORMAT,
        "fingerprint": fingerprint,
        "model": asdict(identity) | {"model_type": model.config.model_type,
                                     "family": model.family.name if model.family else None},
        # A local directory's absolute path differs between clones; the model's source names it, and
        # its revision (a hash of its files) pins it.
        "tokenizer": {"class": type(tok).__name__,
                      "name_or_path": identity.source if Path(str(tok.name_or_path)).is_absolute()
                      else str(tok.name_or_path),
                      "vocab_size": len(tok), "padding_side": settings.padding_side,
                      "pad_token": tok.pad_token},
        "dataset": {"name": source.name, "fingerprint": source.fingerprint, "n_docs": len(source)},
        "settings": {k: getattr(settings, k) for k in SETTINGS},
        "effective_max_length": effective_max_length(model, settings),
        "device": model.device.type,
        "hooks": [{"hook": p.hook, "layer": p.layer, "name": p.name, "width": widths.get(p.name)}
                  for p in points],
        "rows": tables,
        "n_truncated": sum(s.truncated for s in done),
        "shards": [asdict(s) for s in done],
        "versions": {"cortexlens": cortexlens.__version__, "torch": torch.__version__,
                     "transformers": transformers.__version__},
    }
