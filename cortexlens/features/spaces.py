"""Stimulus-level feature spaces read from the store: pooled activations, or an SAE's latents.

* `pooled_space`: the `pooled` table of one hook point (`read_pooled`), one row per document.
* `sae_space(..., mode="tokens")`: every stored token activation of the SAE's hook point is encoded
  (`SAE.encode`) and the latents are pooled per document (mean over its tokens, or its first or last
  token), which is what an SAE's features of a sentence mean; `mode="pooled"` encodes the pooled vector
  instead (cheaper; an SAE never saw such averages in training, so its latents there mean less).

Both return rows sorted by doc_id, with the documents' labels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cortexlens.features.sae import SAE
from cortexlens.store import catalog
from cortexlens.store.reader import iter_activations, read_pooled


@dataclass(frozen=True)
class FeatureSpace:
    name: str  # "activations" or "sae:<sae_id>"
    doc_ids: np.ndarray  # [n] int64, sorted
    X: np.ndarray  # [n, d] float32
    labels: list[dict[str, str]]


def pooled_space(store: Path, model: str, dataset: str, point, pooling: str) -> FeatureSpace:
    pooled = read_pooled(store, model, dataset, point, pooling=pooling)
    return FeatureSpace("activations", pooled.doc_ids, pooled.X, pooled.labels)


def sae_space(store: Path, model: str, dataset: str, sae: SAE, pooling: str, mode: str = "tokens",
              batch_rows: int = 8192) -> FeatureSpace:
    name = f"sae:{sae.sae_id}"
    if mode == "pooled":
        pooled = read_pooled(store, model, dataset, sae.point, pooling=pooling)
        return FeatureSpace(name, pooled.doc_ids, sae.encode(torch.from_numpy(pooled.X)).numpy(), pooled.labels)
    if mode != "tokens":
        raise ValueError(f"mode must be 'tokens' or 'pooled', got {mode!r}")
    # labels and the document order come from the pooled table of the same extraction
    reference = read_pooled(store, model, dataset, sae.point, pooling=catalog.extraction(store, model, dataset).poolings()[0])
    row_of = {int(d): i for i, d in enumerate(reference.doc_ids)}
    sums = np.zeros((len(row_of), sae.d_sae), dtype=np.float64)
    counts = np.zeros(len(row_of), dtype=np.int64)
    chosen_pos = np.full(len(row_of), -1 if pooling == "last" else np.iinfo(np.int64).max, dtype=np.int64)
    for batch in iter_activations(store, model, dataset, sae.point, batch_rows=batch_rows):
        latents = sae.encode(torch.from_numpy(batch[sae.point])).double().numpy()  # [rows, d_sae]
        rows = np.fromiter((row_of[int(d)] for d in batch.doc_id), dtype=np.int64, count=len(batch))
        if pooling == "mean":
            np.add.at(sums, rows, latents)
            np.add.at(counts, rows, 1)
            continue
        _keep_extreme(sums, chosen_pos, rows, batch.pos.astype(np.int64), latents, last=pooling == "last")
    X = sums / np.maximum(counts, 1)[:, None] if pooling == "mean" else sums
    return FeatureSpace(name, reference.doc_ids, X.astype(np.float32), reference.labels)


def _keep_extreme(out: np.ndarray, chosen: np.ndarray, rows: np.ndarray, pos: np.ndarray, latents: np.ndarray,
                  last: bool) -> None:
    """Keep, per document row, the latents of its last (or first) position seen so far."""
    for i in range(len(rows)):
        row, p = rows[i], pos[i]
        if (p > chosen[row]) if last else (p < chosen[row]):
            chosen[row] = p
            out[row] = latents[i]
