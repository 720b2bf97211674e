"""The files of one shard: documents, tokens, and activations and pooled features per hook point."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from cortexlens.errors import CortexLensError
from cortexlens.extraction.batches import TokenBatch, token_rows
from cortexlens.extraction.pooling import pool
from cortexlens.models.hooks import HookPoint
from cortexlens.store import layout, tables
from cortexlens.store.shards import FileRecord, ShardFile


class TokenDecoder:
    """Token strings as `decode` shows them (' the', not 'Ġthe'), cached per id."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        self.cache: dict[int, str] = {}

    def __call__(self, ids: np.ndarray) -> list[str]:
        out = []
        for token_id in ids.tolist():
            text = self.cache.get(token_id)
            if text is None:
                text = self.tokenizer.decode([token_id])
                self.cache[token_id] = text
            out.append(text)
        return out


def flatten_tokens(acts: torch.Tensor, point: HookPoint, batch: TokenBatch) -> torch.Tensor:
    """[batch, pos, ...] -> [batch, pos, width]; attn_z's heads are flattened head-major."""
    if acts.dim() < 3 or tuple(acts.shape[:2]) != tuple(batch.mask.shape):
        raise CortexLensError(f"extract.hooks: {point.name} gives shape {list(acts.shape)}, not "
                              f"[batch, pos, ...]; only per-token outputs can be stored")
    return acts.reshape(*acts.shape[:2], -1)


def _now(fn: Callable[..., Any], *args: Any) -> None:
    fn(*args)


@dataclass
class _Gathered:
    """One batch's rows, copied to numpy on the forward's thread (the batch's tensors can then go)."""

    batch: TokenBatch
    slots: np.ndarray  # [batch] each document's place in its window (corpus order)
    doc_id: np.ndarray  # [n_tokens] int64
    pos: np.ndarray  # [n_tokens] int32
    token_id: np.ndarray  # [n_tokens] int32
    acts: dict[HookPoint, np.ndarray]  # [n_tokens, width] per point
    pooled: dict[HookPoint, np.ndarray]  # [n_poolings, batch, width] per point


class ShardWriter:
    """Streams one shard's rows into its Parquet files; `close` publishes them all.

    Rows are gathered on the caller's thread, batch by batch (`add`); `flush_window` puts a window of
    batches back in corpus order and hands their encoding and compression to `run` as one unit of work
    (immediately by default, or on a BackgroundWriter's thread). A window lets the runner batch documents
    by length (less padding) while every table keeps the corpus's order, one row per (doc_id, pos).
    """

    def __init__(self, root: Path, shard: int, store_dtype: str, compression: str, row_group_rows: int,
                 poolings: list[str], decoder: TokenDecoder,
                 run: Callable[..., None] = _now, pool: Executor | None = None) -> None:
        """`pool` encodes a window's files in parallel (one task per file); default: one after another."""
        self.root, self.shard = root, shard
        self.pool = pool
        self.store_dtype, self.compression, self.row_group_rows = store_dtype, compression, row_group_rows
        self.poolings, self.decoder, self.run = poolings, decoder, run
        self.files: dict[str, ShardFile] = {}
        self.rows = 0
        self.truncated = 0
        self.widths: dict[str, int] = {}
        self._window: list[_Gathered] = []

    def _file(self, relative: str, schema: pa.Schema) -> ShardFile:
        if relative not in self.files:
            self.files[relative] = ShardFile(self.root, relative, schema, self.compression, self.row_group_rows)
        return self.files[relative]

    def write(self, batch: TokenBatch, cache: dict[HookPoint, torch.Tensor]) -> int:
        """One batch as its own window, in its own order; returns its token rows."""
        self.add(batch, cache)
        return self.flush_window()

    def add(self, batch: TokenBatch, cache: dict[HookPoint, torch.Tensor],
            slots: np.ndarray | None = None) -> None:
        """Copy one batch's real-token rows (and pooled features) to numpy; `slots` [batch] are its
        documents' places in the window (default: after the documents added so far, in batch order)."""
        if slots is None:
            start = sum(len(g.batch.docs) for g in self._window)
            slots = np.arange(start, start + len(batch.docs))
        doc_id, pos, token_id = token_rows(batch)
        acts, pooled = {}, {}
        for point, tensor in cache.items():
            tensor = flatten_tokens(tensor, point, batch)  # [batch, pos, width]
            rows = tensor.flatten(0, 1).index_select(0, batch.rows)  # [n_tokens, width]
            acts[point] = rows.float().cpu().numpy()
            self.widths[point.name] = acts[point].shape[1]
            if self.poolings:
                pooled[point] = np.stack([pool(tensor, batch.mask, kind).cpu().numpy() for kind in self.poolings])
        self._window.append(_Gathered(batch, np.asarray(slots), doc_id, pos, token_id, acts, pooled))
        self.rows += int(batch.n_tokens.sum())
        self.truncated += int(batch.truncated.sum())

    def flush_window(self) -> int:
        """Hand the window's rows, in corpus order, to `run`; returns their count."""
        window, self._window = self._window, []
        if not window:
            return 0
        self.run(self._encode, window)
        return sum(len(g.doc_id) for g in window)

    def _encode(self, window: list[_Gathered]) -> None:
        """Order the window's rows by (document slot, pos) and append them to the shard's files."""
        doc_order = np.argsort(np.concatenate([g.slots for g in window]), kind="stable")  # [docs]
        row_slots = np.concatenate([np.repeat(g.slots, g.batch.n_tokens) for g in window])
        row_order = np.argsort(row_slots, kind="stable")  # [rows]: each document's positions stay in order
        docs = [doc for g in window for doc in g.batch.docs]
        docs = [docs[i] for i in doc_order]
        n_tokens = np.concatenate([g.batch.n_tokens for g in window])[doc_order]
        truncated = np.concatenate([g.batch.truncated for g in window])[doc_order]
        doc_ids = np.array([d.doc_id for d in docs], dtype=np.int64)

        def rows(arrays: list[np.ndarray]) -> np.ndarray:
            return np.concatenate(arrays)[row_order]

        doc_id, pos = rows([g.doc_id for g in window]), rows([g.pos for g in window])
        token_id = rows([g.token_id for g in window])
        pending = [
            (self._file(layout.documents_file(self.shard), tables.DOCUMENTS_SCHEMA), pa.RecordBatch.from_pydict({
                "doc_id": doc_ids, "text": [d.text for d in docs], "n_tokens": n_tokens, "truncated": truncated,
                "labels": [list(d.labels.items()) for d in docs]}, schema=tables.DOCUMENTS_SCHEMA)),
            (self._file(layout.tokens_file(self.shard), tables.TOKENS_SCHEMA), pa.RecordBatch.from_pydict({
                "doc_id": doc_id, "pos": pos, "token_id": token_id, "token": self.decoder(token_id)},
                schema=tables.TOKENS_SCHEMA)),
        ]
        k = len(self.poolings)
        for point in window[0].acts:
            acts = rows([g.acts[point] for g in window])  # [rows, width]
            schema = tables.activations_schema(acts.shape[1], self.store_dtype)
            pending.append((self._file(layout.activation_file(self.shard, point), schema),
                            tables.activations_batch(doc_id, pos, acts, self.store_dtype)))
            if not self.poolings:
                continue
            # Document-major, poolings in their configured order: the same rows whatever the window.
            pooled = np.concatenate([g.pooled[point] for g in window], axis=1)[:, doc_order]  # [k, docs, width]
            pooled = pooled.transpose(1, 0, 2).reshape(-1, pooled.shape[2])  # [docs * k, width]
            schema = tables.pooled_schema(pooled.shape[1], self.store_dtype)
            pending.append((self._file(layout.pooled_file(self.shard, point), schema), tables.pooled_batch(
                np.repeat(doc_ids, k), self.poolings * len(docs), np.repeat(n_tokens, k), pooled,
                self.store_dtype)))
        # Each file gets one append per window, so files can be encoded side by side (Parquet's
        # encoder and zstd release the GIL).
        self._each([(shard_file.append, batch_rows) for shard_file, batch_rows in pending])

    def _each(self, calls: list[tuple[Callable[..., Any], ...]]) -> list[Any]:
        """Run calls of distinct files, on the pool when there is one; their results in order."""
        if self.pool is None:
            return [fn(*args) for fn, *args in calls]
        return [done.result() for done in [self.pool.submit(fn, *args) for fn, *args in calls]]

    def close(self) -> list[FileRecord]:
        """Write each file's last row group, publish it, and return the records (in file order)."""
        return self._each([(f.close,) for f in self.files.values()])

    def abort(self) -> None:
        for f in self.files.values():
            f.abort()
