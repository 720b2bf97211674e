"""The features a probe reads: pooled vectors of the chosen documents, or the activation at a position.

Rows come back in the order of `doc_ids` (the concept's chosen documents), so the same labels and
groups line up with every hook point, layer and pooling.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cortexlens.models.hooks import HookPoint
from cortexlens.store.reader import iter_activations, read_pooled


class FeatureCache:
    """Pooled matrices of one model, read once per (dataset, point, pooling) and indexed per concept."""

    def __init__(self, store: Path, model: str) -> None:
        self.store, self.model = Path(store), model
        self._pooled: dict[tuple[str, HookPoint, str], tuple[np.ndarray, np.ndarray]] = {}

    def pooled(self, dataset: str, point: HookPoint, pooling: str, doc_ids: np.ndarray) -> np.ndarray:
        """[len(doc_ids), d] float32."""
        key = (dataset, point, pooling)
        if key not in self._pooled:
            found = read_pooled(self.store, self.model, dataset, point, pooling=pooling)
            self._pooled[key] = (found.doc_ids, found.X)
        ids, X = self._pooled[key]
        return X[_rows(ids, doc_ids)]

    def token(self, dataset: str, point: HookPoint, position: int, doc_ids: np.ndarray,
              n_tokens: np.ndarray) -> np.ndarray:
        """The activation at `position` of each document ([len(doc_ids), d]); negative positions count
        from each document's end (-1: its last token). ValueError when a document is too short."""
        wanted = np.where(position >= 0, position, n_tokens + position)  # [docs] position per document
        if (wanted < 0).any() or (wanted >= n_tokens).any():
            short = int(doc_ids[(wanted < 0) | (wanted >= n_tokens)][0])
            raise ValueError(f"document {short} has no position {position}")
        order = np.argsort(doc_ids)
        key = doc_ids[order].astype(np.int64) * (1 << 32) + wanted[order]  # sorted like (doc_id, pos)
        out: np.ndarray | None = None
        for batch in iter_activations(self.store, self.model, dataset, point, docs=doc_ids):
            batch_key = batch.doc_id.astype(np.int64) * (1 << 32) + batch.pos
            hit = np.isin(batch_key, key)
            if not hit.any():
                continue
            acts = batch[point]
            out = np.zeros((len(doc_ids), acts.shape[1]), np.float32) if out is None else out
            out[order[np.searchsorted(key, batch_key[hit])]] = acts[hit]
        assert out is not None, "no stored activation at the requested positions"
        return out


def _rows(ids: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Index of each wanted doc_id in the sorted `ids` (KeyError if one is missing)."""
    where = np.searchsorted(ids, wanted)
    if (where >= len(ids)).any() or not np.array_equal(ids[np.minimum(where, len(ids) - 1)], wanted):
        raise KeyError("documents without pooled features")
    return where
