"""Fast numpy access to stored activations: pooled features per document, token rows in batches.

Reads exactly the files the SQL views read (`catalog`), so both see the same rows. Token rows come in
store order (shard, then doc_id, then pos), one row group of the Parquet files at a time, decoded on a
small thread pool a few row groups ahead (zstd decoding releases the GIL, so 2 cores decode in
parallel). Memory is bounded by that window and the batch, never by the store size.

Arrays are float32 numpy views of the decoded Arrow buffers (no copy for float32 stores; float16
stores are upcast, which copies). They are writable, so `torch.from_numpy(batch[point])` shares memory
without a warning. This module does not import torch.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from cortexlens.errors import StoreError
from cortexlens.models.hooks import HookPoint
from cortexlens.store import catalog
from cortexlens.store.catalog import Extraction, PointLike

TOKEN_COLUMNS = ["doc_id", "pos", "act"]
_END = object()
T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class Pooled:
    """Document-level features of one hook point and pooling, sorted by doc_id."""

    point: HookPoint
    pooling: str
    doc_ids: np.ndarray  # [n] int64
    X: np.ndarray  # [n, width] float32
    n_tokens: np.ndarray  # [n] int32: tokens the pooling ran over
    labels: list[dict[str, str]]  # the documents' labels, aligned with doc_ids


@dataclass(frozen=True)
class ActivationBatch:
    """Token rows: row i of every point's matrix is the token (doc_id[i], pos[i])."""

    doc_id: np.ndarray  # [n] int64
    pos: np.ndarray  # [n] int32
    acts: dict[HookPoint, np.ndarray]  # point -> [n, width] float32
    token_id: np.ndarray | None = None  # [n] int32 when the producer knows them (computed activations)

    def __len__(self) -> int:
        return len(self.doc_id)

    def __getitem__(self, point: PointLike) -> np.ndarray:
        key = catalog.as_point(point)
        if key is None:  # a stored name: blocks.3.hook_resid_post
            key = next((p for p in self.acts if p.name == point), None)
        if key not in self.acts:
            raise KeyError(f"{point!r} is not in this batch (points: {', '.join(map(str, self.acts))})")
        return self.acts[key]

    def slice(self, start: int, stop: int) -> ActivationBatch:
        """Rows [start, stop): views, no copy."""
        return ActivationBatch(self.doc_id[start:stop], self.pos[start:stop],
                               {p: a[start:stop] for p, a in self.acts.items()},
                               None if self.token_id is None else self.token_id[start:stop])

    def take(self, index: np.ndarray) -> ActivationBatch:
        """Rows `index` (a copy)."""
        return ActivationBatch(self.doc_id[index], self.pos[index], {p: a[index] for p, a in self.acts.items()},
                               None if self.token_id is None else self.token_id[index])


@dataclass(frozen=True)
class RowGroup:
    """Row group `index` of one shard's files, one file per hook point: the unit of reading."""

    shard: int
    index: int
    rows: int
    files: tuple[Path, ...]  # one per point, in the points' order
    metadata: tuple[pq.FileMetaData, ...]
    doc_min: int  # doc_id range, from the row group's statistics
    doc_max: int


def _matrix(column: pa.ChunkedArray | pa.Array, width: int) -> np.ndarray:
    """A fixed-size-list column -> [rows, width] float32; a view of the Arrow buffer for float32."""
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    parts = [_chunk_matrix(chunk, width) for chunk in chunks if len(chunk)]
    if len(parts) == 1:
        return parts[0]
    if not parts:
        return np.empty((0, width), np.float32)
    return np.concatenate(parts)  # a row group decoded in several chunks: rare, and a copy is unavoidable


def _chunk_matrix(chunk: pa.FixedSizeListArray, width: int) -> np.ndarray:
    flat = chunk.flatten()  # honours the array's offset, unlike .values
    dtype = flat.type.to_pandas_dtype()
    data = flat.buffers()[1]
    if data.is_mutable:  # freshly decoded: a writable view, so torch.from_numpy needs no copy or warning
        values = np.frombuffer(data, dtype=dtype, count=len(flat), offset=flat.offset * np.dtype(dtype).itemsize)
    else:
        values = flat.to_numpy(zero_copy_only=True)
    matrix = values.reshape(-1, width)  # [rows, width]
    return matrix if matrix.dtype == np.float32 else matrix.astype(np.float32)  # float16: upcast (a copy)


def _ints(column: pa.ChunkedArray) -> np.ndarray:
    return column.to_numpy()  # one chunk: zero-copy; several: concatenated


def prefetched(fn: Callable[[T], R], items: Iterable[T], window: int, threads: int) -> Iterator[R]:
    """fn(item) for each item, in order, computed up to `window` items ahead on `threads` threads.

    Closing the generator early (the caller breaks) cancels what is queued and stops the threads.
    """
    pool = ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="cortexlens-read")
    pending: deque[Future[R]] = deque()
    source = iter(items)

    def submit_next() -> bool:
        item = next(source, _END)
        if item is not _END:
            pending.append(pool.submit(fn, item))
        return item is not _END

    try:
        while len(pending) < window and submit_next():
            pass
        while pending:
            result = pending.popleft().result()
            submit_next()  # keep the window full while the caller works on `result`
            yield result
    finally:
        for future in pending:
            future.cancel()
        pool.shutdown(wait=True, cancel_futures=True)


def default_threads() -> int:
    return min(4, os.cpu_count() or 1)


class TokenReader:
    """The row groups of several hook points' activation files, read in lockstep."""

    def __init__(self, ext: Extraction, points: Sequence[PointLike]) -> None:
        infos = []
        for p in points:
            info = ext.point(p)
            if info.point not in [i.point for i in infos]:
                infos.append(info)
        if not infos:
            raise ValueError("no hook points given")
        self.ext = ext
        self.points = [i.point for i in infos]
        self.widths = [i.width for i in infos]
        self.units = self._units([ext.files("activations", p) for p in self.points])

    @property
    def rows(self) -> int:
        return sum(u.rows for u in self.units)

    def _units(self, per_point: list[list[catalog.FileInfo]]) -> list[RowGroup]:
        first = per_point[0]
        for point, files in zip(self.points[1:], per_point[1:]):
            if [(f.shard, f.rows) for f in files] != [(f.shard, f.rows) for f in first]:
                raise StoreError(f"store: {self.ext.label} {point.name} has other shards or row counts than "
                                 f"{self.points[0].name}; its manifest is inconsistent")
        units = []
        for shard_files in zip(*per_point):
            metadata = tuple(self._metadata(f, width) for f, width in zip(shard_files, self.widths))
            sizes = [[md.row_group(i).num_rows for i in range(md.num_row_groups)] for md in metadata]
            for f, other in zip(shard_files[1:], sizes[1:]):
                if other != sizes[0]:
                    raise StoreError(f"store: row groups of {f.path} differ from those of {shard_files[0].path}")
            for index, rows in enumerate(sizes[0]):
                low, high = _doc_range(metadata[0], index)
                units.append(RowGroup(shard_files[0].shard, index, rows, tuple(f.path for f in shard_files),
                                      metadata, low, high))
        return units

    @staticmethod
    def _metadata(f: catalog.FileInfo, width: int) -> pq.FileMetaData:
        """The file's footer, checked against its manifest entry (a stale or foreign file fails here)."""
        md = pq.read_metadata(f.path)
        stored = md.schema.to_arrow_schema().field("act").type
        if md.num_rows != f.rows or getattr(stored, "list_size", None) != width:
            raise StoreError(f"store: {f.path} holds {md.num_rows} rows of {stored}, its manifest says "
                             f"{f.rows} rows of width {width}")
        return md

    def read(self, unit: RowGroup) -> ActivationBatch:
        """Decode one row group of every point; doc_id/pos of every point must agree."""
        doc_id = pos = None
        acts = {}
        for point, width, path, md in zip(self.points, self.widths, unit.files, unit.metadata):
            table = pq.ParquetFile(path, metadata=md).read_row_group(unit.index, columns=TOKEN_COLUMNS,
                                                                     use_threads=False)
            d, p = _ints(table.column("doc_id")), _ints(table.column("pos"))
            if doc_id is None:
                doc_id, pos = d, p
            elif not (np.array_equal(d, doc_id) and np.array_equal(p, pos)):
                raise StoreError(f"store: rows of {path} (row group {unit.index}) are not the tokens of "
                                 f"{unit.files[0]}; the points' files do not line up")
            acts[point] = _matrix(table.column("act"), width)  # [rows, width]
        return ActivationBatch(doc_id, pos, acts)

    def iter_units(self, units: Iterable[RowGroup], prefetch: int, threads: int | None = None
                   ) -> Iterator[ActivationBatch]:
        return prefetched(self.read, units, max(1, prefetch), threads or default_threads())


def _doc_range(md: pq.FileMetaData, index: int) -> tuple[int, int]:
    group = md.row_group(index)
    for j in range(group.num_columns):
        column = group.column(j)
        if column.path_in_schema == "doc_id" and column.statistics is not None and column.statistics.has_min_max:
            return int(column.statistics.min), int(column.statistics.max)
    return np.iinfo(np.int64).min, np.iinfo(np.int64).max  # no statistics: cannot skip it


def doc_filter(docs: Iterable[int] | np.ndarray | None) -> np.ndarray | None:
    """Sorted unique doc_ids to keep, or None for all."""
    return None if docs is None else np.unique(np.asarray(docs, dtype=np.int64))


def may_hold(unit: RowGroup, keep: np.ndarray | None) -> bool:
    """False when the row group's doc_id range holds none of `keep` (it need not be read)."""
    if keep is None:
        return True
    return np.searchsorted(keep, unit.doc_min) != np.searchsorted(keep, unit.doc_max, side="right")


def filtered(batch: ActivationBatch, keep: np.ndarray | None) -> ActivationBatch:
    """Rows of `batch` whose doc_id is in `keep` (sorted): the batch itself when all are."""
    if keep is None:
        return batch
    mask = np.isin(batch.doc_id, keep, assume_unique=False)
    return batch if mask.all() else batch.take(np.flatnonzero(mask))


def point_list(points: PointLike | Sequence[PointLike]) -> list[PointLike]:
    """One point or several: HookPoint / (hook, layer) / name, or a list of them."""
    if isinstance(points, HookPoint | str):
        return [points]
    if isinstance(points, tuple) and len(points) == 2 and isinstance(points[1], int | np.integer):
        return [points]
    return list(points)


def iter_activations(store: Path, model: str, dataset: str, points: PointLike | Sequence[PointLike],
                     batch_rows: int = 8192, docs: Iterable[int] | np.ndarray | None = None,
                     prefetch: int = 4, threads: int | None = None) -> Iterator[ActivationBatch]:
    """Token rows of one or several hook points, in store order (shard, doc_id, pos).

    Every batch holds the same tokens for every point: `batch[point]` is [n, width] float32 and row i
    is token (batch.doc_id[i], batch.pos[i]). Batches hold at most `batch_rows` rows; they are shorter
    at row-group ends (and after the `docs` filter), because a batch never spans two row groups: that
    keeps float32 batches zero-copy views. Use ShufflingLoader for batches of exactly `batch_rows`.

    `docs` keeps only those doc_ids (a held-out split); row groups whose doc_id range holds none are
    not read. `prefetch` row groups are decoded ahead on `threads` threads (default min(4, cores)).
    Memory: about (prefetch + 1) row groups of every point, whatever the store size.
    Float32 stores give views of the decoded buffers (no copy); float16 stores are upcast (a copy).
    For torch: `torch.from_numpy(batch[point])` (shares memory; the arrays are writable).
    """
    if batch_rows < 1:
        raise ValueError(f"batch_rows must be positive, got {batch_rows}")
    reader = TokenReader(catalog.extraction(Path(store), model, dataset), point_list(points))
    keep = doc_filter(docs)
    units = [u for u in reader.units if may_hold(u, keep)]
    for piece in reader.iter_units(units, prefetch, threads):
        piece = filtered(piece, keep)
        for start in range(0, len(piece), batch_rows):
            yield piece.slice(start, start + batch_rows)


def iter_pairs(store: Path, model: str, dataset: str, x_point: PointLike, y_point: PointLike,
               batch_rows: int = 8192, docs: Iterable[int] | np.ndarray | None = None, prefetch: int = 4,
               threads: int | None = None) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """(doc_id [n], pos [n], X [n, dx], Y [n, dy]) of the same tokens: input and target of a transcoder."""
    ext = catalog.extraction(Path(store), model, dataset)
    x, y = ext.point(x_point).point, ext.point(y_point).point
    for batch in iter_activations(store, model, dataset, [x, y], batch_rows, docs, prefetch, threads):
        yield batch.doc_id, batch.pos, batch[x], batch[y]


def read_pooled(store: Path, model: str, dataset: str, hook: PointLike, layer: int | None = None,
                pooling: str = "mean") -> Pooled:
    """Pooled features of one hook point (`hook, layer` or a HookPoint) for every document."""
    ext = catalog.extraction(Path(store), model, dataset)
    info = ext.point(hook, layer)
    if pooling not in ext.poolings():
        raise StoreError(f"store: no pooling {pooling!r} of {info.name} in extraction {ext.label} "
                         f"(stored: {', '.join(ext.poolings()) or 'none'})")
    doc_ids, n_tokens, matrices = [np.empty(0, np.int64)], [np.empty(0, np.int32)], [
        np.empty((0, info.width), np.float32)]
    for f in ext.files("pooled", info.point):
        table = pq.read_table(f.path, columns=["doc_id", "pooling", "n_tokens", "act"])
        table = table.filter(pc.equal(table.column("pooling"), pooling))
        doc_ids.append(_ints(table.column("doc_id")))
        n_tokens.append(_ints(table.column("n_tokens")))
        matrices.append(_matrix(table.column("act"), info.width))  # [docs in file, width]
    ids = np.concatenate(doc_ids)
    order = np.argsort(ids, kind="stable")
    return Pooled(info.point, pooling, ids[order], np.concatenate(matrices)[order],
                  np.concatenate(n_tokens)[order], _labels(ext, ids[order]))


def _labels(ext: Extraction, doc_ids: np.ndarray) -> list[dict[str, str]]:
    by_doc: dict[int, dict[str, str]] = {}
    for f in ext.files("documents"):
        table = pq.read_table(f.path, columns=["doc_id", "labels"])
        for doc_id, labels in zip(table.column("doc_id").to_pylist(), table.column("labels").to_pylist()):
            by_doc[doc_id] = dict(labels or [])
    return [by_doc.get(int(d), {}) for d in doc_ids]
