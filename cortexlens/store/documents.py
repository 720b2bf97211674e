"""The documents and tokens of an extraction, as arrays: what analyses join activations with.

Token rows are in store order, sorted by (doc_id, pos), the same order as every hook point's rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from cortexlens.store import catalog


def _ints(column) -> np.ndarray:
    return column.to_numpy()


@dataclass(frozen=True)
class Tokens:
    """The extraction's tokens in store order (by doc_id, then pos): the rows of every activation."""

    doc_id: np.ndarray  # [tokens] int64
    pos: np.ndarray  # [tokens] int32
    token_id: np.ndarray  # [tokens] int32

    def lookup(self, doc_id: np.ndarray, pos: np.ndarray) -> np.ndarray:
        """Token ids of the rows (doc_id, pos): [rows] int32 (KeyError if a row is not a stored token)."""
        keys = _token_keys(self.doc_id, self.pos)
        wanted = _token_keys(doc_id, pos)
        where = np.searchsorted(keys, wanted)
        if len(keys) == 0 or (where >= len(keys)).any() or not np.array_equal(keys[np.minimum(where, len(keys) - 1)], wanted):
            raise KeyError("rows that are not stored tokens")
        return self.token_id[where]


def _token_keys(doc_id: np.ndarray, pos: np.ndarray) -> np.ndarray:
    return doc_id.astype(np.int64) * (1 << 32) + pos.astype(np.int64)  # sorts like (doc_id, pos)


def read_tokens(store: Path, model: str, dataset: str) -> Tokens:
    """doc_id, pos and token_id of every stored token, sorted by (doc_id, pos)."""
    ext = catalog.extraction(Path(store), model, dataset)
    parts = [pq.read_table(f.path, columns=["doc_id", "pos", "token_id"]) for f in ext.files("tokens")]
    doc_id = np.concatenate([_ints(t.column("doc_id")) for t in parts] or [np.empty(0, np.int64)])
    pos = np.concatenate([_ints(t.column("pos")) for t in parts] or [np.empty(0, np.int32)])
    token_id = np.concatenate([_ints(t.column("token_id")) for t in parts] or [np.empty(0, np.int32)])
    order = np.argsort(_token_keys(doc_id, pos), kind="stable")
    return Tokens(doc_id[order], pos[order], token_id[order])


@dataclass(frozen=True)
class StoredDocument:
    doc_id: int
    text: str
    n_tokens: int  # tokens kept (after truncation to the extraction's max length)
    labels: dict[str, str]


def read_documents(store: Path, model: str, dataset: str, limit: int | None = None) -> list[StoredDocument]:
    """The extraction's documents (text, labels), by doc_id; the first `limit` when given."""
    ext = catalog.extraction(Path(store), model, dataset)
    docs = []
    for f in ext.files("documents"):
        table = pq.read_table(f.path, columns=["doc_id", "text", "n_tokens", "labels"])
        for doc_id, text, n, labels in zip(*(table.column(c).to_pylist() for c in table.column_names)):
            docs.append(StoredDocument(int(doc_id), text, int(n), dict(labels or [])))
    docs.sort(key=lambda d: d.doc_id)
    return docs[:limit] if limit is not None else docs
