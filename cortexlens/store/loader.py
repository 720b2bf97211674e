"""A seeded shuffling loader of token rows for training (SAEs, transcoders, probes on tokens).

Like SAELens's mixing buffer, but exact and reproducible. The units are row groups of the Parquet
files (every point's file at the same row-group index). Per epoch, `default_rng((seed, epoch))`
permutes the shards and the row groups of each shard, then deals them round-robin across shards, so
the first fill of the buffer already spans as many shards as it can hold row groups. The buffer is
filled to `buffer_rows`, permuted, its first half emitted as batches of `batch_rows`, refilled, and so
on; at the end of the epoch the rest is emitted, permuted.

Guarantees: every row exactly once per epoch; the same (seed, epoch) gives the same batches; batches
hold exactly `batch_rows` rows except the epoch's last; `epoch(e, start_batch=k)` yields exactly
batches k, k+1, ... of `epoch(e)`, so a killed training run resumes where it stopped. Resuming replays
the shuffle on row indices only (no data read) and then reads just the row groups whose rows are still
in the buffer.

Memory per point: the buffer, (buffer_rows + one row group) x width x 4 bytes (rows stay in their
slot until emitted, so nothing is compacted), plus the read-ahead window of row groups and the batch
being built. The default 65536 rows of width 384 is ~100 MB (~400 MB at width 1536).
"""

from __future__ import annotations

from collections.abc import Generator, Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from cortexlens.models.hooks import HookPoint
from cortexlens.store import catalog
from cortexlens.store.catalog import PointLike
from cortexlens.store.reader import (
    ActivationBatch,
    RowGroup,
    TokenReader,
    default_threads,
    doc_filter,
    filtered,
    may_hold,
    point_list,
    prefetched,
)


class _Buffer:
    """Rows held for mixing, in preallocated slots; `live` lists the occupied slots in buffer order.

    Emitting rows frees their slots and new rows fill free slots, so rows never move while they wait:
    each row is copied once in (from the decoded row group) and once out (into its batch).
    """

    def __init__(self, capacity: int, points: list[HookPoint], widths: list[int]) -> None:
        self.doc_id = np.empty(capacity, np.int64)  # [capacity]
        self.pos = np.empty(capacity, np.int32)
        self.acts = {p: np.empty((capacity, w), np.float32) for p, w in zip(points, widths)}  # [capacity, width]
        self.live = np.empty(0, np.int64)  # [rows held]: slot of each row, in buffer order
        self.free = np.arange(capacity)

    def _write(self, slots: np.ndarray, piece: ActivationBatch, index: np.ndarray | slice) -> None:
        self.doc_id[slots], self.pos[slots] = piece.doc_id[index], piece.pos[index]
        for p, a in self.acts.items():
            a[slots] = piece.acts[p][index]

    def append(self, piece: ActivationBatch) -> None:
        """Rows of `piece` at the end of the buffer order."""
        slots, self.free = self.free[:len(piece)], self.free[len(piece):]
        self._write(slots, piece, slice(None))
        self.live = np.concatenate([self.live, slots])

    def hold(self, n: int) -> None:
        """Take slots for `n` rows at once (filled by `put`)."""
        self.live, self.free = np.arange(n), np.arange(n, len(self.doc_id))

    def put(self, rows: np.ndarray, piece: ActivationBatch, index: np.ndarray) -> None:
        """Rows `rows` (positions in buffer order) <- rows `index` of `piece`."""
        self._write(self.live[rows], piece, index)

    def take(self, rows: np.ndarray) -> ActivationBatch:
        """A copy of rows `rows` (positions in buffer order)."""
        slots = self.live[rows]
        return ActivationBatch(self.doc_id[slots], self.pos[slots],
                               {p: np.take(a, slots, axis=0) for p, a in self.acts.items()})  # take: ~1.5x a[slots]

    def reorder(self, perm: np.ndarray, n_out: int) -> None:
        """Buffer order becomes perm[n_out:]; the slots of perm[:n_out] (already emitted) are freed."""
        self.free = np.concatenate([self.live[perm[:n_out]], self.free])
        self.live = self.live[perm[n_out:]]


class ShufflingLoader:
    """Shuffled batches of token rows of one or several hook points (the same tokens for each)."""

    def __init__(self, store: Path, model: str, dataset: str, points: PointLike | Sequence[PointLike],
                 batch_rows: int = 4096, buffer_rows: int = 65536, seed: int = 0,
                 docs: Iterable[int] | np.ndarray | None = None, prefetch: int = 4,
                 threads: int | None = None) -> None:
        if batch_rows < 1 or buffer_rows < 2 * batch_rows:
            raise ValueError(f"need 1 <= batch_rows and buffer_rows >= 2 * batch_rows, got batch_rows="
                             f"{batch_rows}, buffer_rows={buffer_rows}")
        self.reader = TokenReader(catalog.extraction(Path(store), model, dataset), point_list(points))
        self.points = self.reader.points
        self.batch_rows, self.buffer_rows, self.seed = batch_rows, buffer_rows, seed
        self.prefetch, self.threads = prefetch, threads
        self.keep = doc_filter(docs)
        units = [u for u in self.reader.units if may_hold(u, self.keep)]
        counts = [u.rows for u in units] if self.keep is None else [self._kept(u) for u in units]
        self.units = [u for u, c in zip(units, counts) if c]
        self.counts = np.array([c for c in counts if c], dtype=np.int64)  # rows per unit after the filter

    def _kept(self, unit: RowGroup) -> int:
        doc_id = pq.ParquetFile(unit.files[0], metadata=unit.metadata[0]).read_row_group(
            unit.index, columns=["doc_id"]).column("doc_id").to_numpy()
        return int(np.isin(doc_id, self.keep).sum())

    @property
    def rows(self) -> int:
        """Rows per epoch (after the docs filter)."""
        return int(self.counts.sum())

    def __len__(self) -> int:
        """Batches per epoch."""
        return (self.rows + self.batch_rows - 1) // self.batch_rows

    def order(self, rng: np.random.Generator) -> np.ndarray:
        """Unit indices in reading order: shards and their row groups permuted, dealt round-robin."""
        by_shard: dict[int, list[int]] = {}
        for i, unit in enumerate(self.units):
            by_shard.setdefault(unit.shard, []).append(i)
        shards = [by_shard[s] for s in sorted(by_shard)]
        queues = [np.array(shards[s])[rng.permutation(len(shards[s]))] for s in rng.permutation(len(shards))]
        depth = max((len(q) for q in queues), default=0)
        return np.array([q[k] for k in range(depth) for q in queues if k < len(q)], dtype=np.int64)

    def epoch(self, epoch: int, start_batch: int = 0) -> Iterator[ActivationBatch]:
        """Batches of epoch `epoch`, from batch `start_batch` on (0 <= start_batch)."""
        rng = np.random.default_rng((self.seed, epoch))
        seq = self.order(rng)  # [units] in reading order
        offsets = np.concatenate([[0], np.cumsum(self.counts[seq])])  # rows of unit seq[j]: offsets[j]..
        ids = np.empty(0, np.int64)  # row ids in the buffer, in buffer order
        buffer: _Buffer | None = None  # None while replaying the batches before start_batch
        stream = None
        j, batch, B = 0, 0, self.batch_rows
        try:
            while j < len(seq) or len(ids):
                first = j
                while j < len(seq) and len(ids) + offsets[j] - offsets[first] < self.buffer_rows:
                    j += 1
                ids = np.concatenate([ids, np.arange(offsets[first], offsets[j])])
                if buffer is not None:
                    for _ in range(first, j):
                        buffer.append(next(stream))
                last = j == len(seq)
                n_batches = -(-len(ids) // B) if last else (len(ids) // 2) // B
                if buffer is None and batch + n_batches > start_batch:
                    buffer = self._materialize(ids, seq, offsets)
                    stream = self._stream(seq[j:])
                perm = rng.permutation(len(ids))  # drawn whether or not rows are read: resumes replay it
                if buffer is not None:
                    for k in range(max(0, start_batch - batch), n_batches):
                        yield buffer.take(perm[k * B:(k + 1) * B])
                    buffer.reorder(perm, n_batches * B)
                ids = ids[perm[n_batches * B:]]
                batch += n_batches
        finally:
            if stream is not None:
                stream.close()  # stops the read-ahead threads when the caller stops early

    def _stream(self, seq: np.ndarray) -> Generator[ActivationBatch, None, None]:
        units = [self.units[i] for i in seq]
        for piece in self.reader.iter_units(units, self.prefetch, self.threads):
            yield filtered(piece, self.keep)

    def _materialize(self, ids: np.ndarray, seq: np.ndarray, offsets: np.ndarray) -> _Buffer:
        """A buffer holding rows `ids` in that order, reading only the row groups they come from."""
        capacity = self.buffer_rows + int(self.counts.max())
        buffer = _Buffer(capacity, self.points, self.reader.widths)
        buffer.hold(len(ids))
        where = np.searchsorted(offsets, ids, side="right") - 1  # [len(ids)]: position in seq of each row
        by_unit = np.argsort(where, kind="stable")
        needed, starts = np.unique(where[by_unit], return_index=True)
        ends = np.append(starts[1:], len(ids))
        pieces = prefetched(lambda i: filtered(self.reader.read(self.units[seq[i]]), self.keep), needed,
                            max(1, self.prefetch), self.threads or default_threads())
        for i, piece, start, end in zip(needed, pieces, starts, ends):
            rows = by_unit[start:end]  # buffer rows that come from unit seq[i]
            buffer.put(rows, piece, ids[rows] - offsets[i])
        return buffer
