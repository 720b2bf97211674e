"""The files of one shard: documents, tokens, and activations and pooled features per hook point."""

from __future__ import annotations

from collections.abc import Callable
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


class ShardWriter:
    """Streams one shard's rows into its Parquet files; `close` publishes them all.

    Rows are gathered on the caller's thread; encoding and compression run through `run`
    (immediately by default, or on a BackgroundWriter's thread).
    """

    def __init__(self, root: Path, shard: int, store_dtype: str, compression: str, row_group_rows: int,
                 poolings: list[str], decoder: TokenDecoder,
                 run: Callable[..., None] = _now) -> None:
        self.root, self.shard = root, shard
        self.store_dtype, self.compression, self.row_group_rows = store_dtype, compression, row_group_rows
        self.poolings, self.decoder, self.run = poolings, decoder, run
        self.files: dict[str, ShardFile] = {}
        self.rows = 0
        self.truncated = 0
        self.widths: dict[str, int] = {}

    def _file(self, relative: str, schema: pa.Schema) -> ShardFile:
        if relative not in self.files:
            self.files[relative] = ShardFile(self.root, relative, schema, self.compression, self.row_group_rows)
        return self.files[relative]

    def _append(self, relative: str, schema: pa.Schema, rows: pa.RecordBatch) -> None:
        self._pending.append((self._file(relative, schema), rows))

    @staticmethod
    def _append_all(pending: list[tuple[ShardFile, pa.RecordBatch]]) -> None:
        for shard_file, rows in pending:
            shard_file.append(rows)

    def write(self, batch: TokenBatch, cache: dict[HookPoint, torch.Tensor]) -> int:
        """Gather one batch's rows here; hand their encoding to `run` as one unit of work."""
        self._pending: list[tuple[ShardFile, pa.RecordBatch]] = []
        self._gather(batch, cache)
        self.run(self._append_all, self._pending)
        self.rows += int(batch.n_tokens.sum())
        self.truncated += int(batch.truncated.sum())
        return int(batch.n_tokens.sum())

    def _gather(self, batch: TokenBatch, cache: dict[HookPoint, torch.Tensor]) -> None:
        doc_ids, pos, token_ids = token_rows(batch)
        self._append(layout.documents_file(self.shard), tables.DOCUMENTS_SCHEMA, pa.RecordBatch.from_pydict({
            "doc_id": batch.doc_ids, "text": [d.text for d in batch.docs], "n_tokens": batch.n_tokens,
            "truncated": batch.truncated, "labels": [list(d.labels.items()) for d in batch.docs],
        }, schema=tables.DOCUMENTS_SCHEMA))
        self._append(layout.tokens_file(self.shard), tables.TOKENS_SCHEMA, pa.RecordBatch.from_pydict({
            "doc_id": doc_ids, "pos": pos, "token_id": token_ids, "token": self.decoder(token_ids),
        }, schema=tables.TOKENS_SCHEMA))
        for point, acts in cache.items():
            acts = flatten_tokens(acts, point, batch)  # [batch, pos, width]
            rows = acts.flatten(0, 1).index_select(0, batch.rows).float().cpu().numpy()  # [n_tokens, width]
            self.widths[point.name] = rows.shape[1]
            schema = tables.activations_schema(rows.shape[1], self.store_dtype)
            self._append(layout.activation_file(self.shard, point), schema,
                         tables.activations_batch(doc_ids, pos, rows, self.store_dtype))
            self._write_pooled(point, acts, batch)

    def _write_pooled(self, point: HookPoint, acts: torch.Tensor, batch: TokenBatch) -> None:
        if not self.poolings:
            return
        pooled = np.concatenate([pool(acts, batch.mask, kind).cpu().numpy() for kind in self.poolings])
        k = len(self.poolings)
        names = [kind for kind in self.poolings for _ in range(len(batch.docs))]
        schema = tables.pooled_schema(pooled.shape[1], self.store_dtype)
        self._append(layout.pooled_file(self.shard, point), schema, tables.pooled_batch(
            np.tile(batch.doc_ids, k), names, np.tile(batch.n_tokens, k), pooled, self.store_dtype))

    def close(self) -> list[FileRecord]:
        return [f.close() for f in self.files.values()]

    def abort(self) -> None:
        for f in self.files.values():
            f.abort()
