"""Token rows of one model and dataset at any hook point: read from the store when the extraction
has the point, computed from the model otherwise (on the extraction's documents, or on the dataset
when it was not extracted), with the same rows and order either way (`live.iter_model_activations`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from pathlib import Path

import numpy as np

from cortexlens.data.corpus import Document
from cortexlens.extraction.live import iter_model_activations
from cortexlens.models.hooked import HookedModel
from cortexlens.models.hooks import HookPoint
from cortexlens.store import catalog
from cortexlens.store.documents import Tokens, read_documents, read_tokens
from cortexlens.store.reader import ActivationBatch, iter_activations


class ActivationSource:
    def __init__(self, store: Path, model: HookedModel, dataset: str, dataset_documents: Callable[[], Iterable[Document]],
                 max_length: int, padding_side: str = "right", batch_size: int = 32, max_docs: int | None = None) -> None:
        """`dataset_documents` opens the dataset (used only when it was not extracted for this model);
        `max_docs` caps the documents a computed run reads."""
        self.store, self.model, self.dataset = Path(store), model, dataset
        self.dataset_documents, self.max_docs = dataset_documents, max_docs
        self.max_length, self.padding_side, self.batch_size = max_length, padding_side, batch_size
        found = [e for e in catalog.extractions(self.store) if (e.model, e.dataset) == (model.name, dataset)]
        self.extraction = found[0] if found else None
        self._documents: list[Document] | None = None
        self._tokens: Tokens | None = None

    def stored(self, point: HookPoint) -> bool:
        return self.extraction is not None and any(h.point == point for h in self.extraction.hooks())

    def batches(self, point: HookPoint) -> Iterator[ActivationBatch]:
        if self.stored(point):
            return iter_activations(self.store, self.model.name, self.dataset, point)
        return iter_model_activations(self.model, self.documents(), [point], self.max_length, self.padding_side,
                                      self.batch_size)

    def documents(self) -> list[Document]:
        """The extraction's documents (its text, as stored), else the dataset's; at most `max_docs`."""
        if self._documents is None:
            if self.extraction is not None:
                stored = read_documents(self.store, self.model.name, self.dataset, self.max_docs)
                self._documents = [Document(d.doc_id, d.text, d.labels) for d in stored]
            else:
                self._documents = list(islice(self.dataset_documents(), self.max_docs))
        return self._documents

    def token_ids(self, batch: ActivationBatch) -> np.ndarray:
        """[rows] token ids of a batch from `batches` (stored batches look them up in the tokens table)."""
        if batch.token_id is not None:
            return batch.token_id
        if self._tokens is None:
            self._tokens = read_tokens(self.store, self.model.name, self.dataset)
        return self._tokens.lookup(batch.doc_id, batch.pos)
