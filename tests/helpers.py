"""Small builders shared by tests: run an extraction into a store, read it back through DuckDB."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from cortexlens.config.schema import Extract
from cortexlens.config.semantic import hook_points_for
from cortexlens.data.corpus import Document, generate_corpus
from cortexlens.data.sources import DocumentSource
from cortexlens.extraction.runner import ModelIdentity, extract
from cortexlens.models.describe import ModelInfo
from cortexlens.models.loading import ResolvedSource, load_hooked_model
from cortexlens.store import layout
from cortexlens.store.sql import connect


def source_of(docs: list[Document], name: str = "corpus", fingerprint: str | None = None) -> DocumentSource:
    return DocumentSource(name, len(docs), fingerprint or f"test:{len(docs)}", lambda: iter(docs))


def load_local(directory: Path, name: str = "m"):
    return load_hooked_model(name, ResolvedSource("local", str(directory)), torch.device("cpu"))


def run_extraction(model, store: Path, docs: list[Document] | None = None, dataset: str = "corpus",
                   **settings) -> dict:
    docs = docs if docs is not None else generate_corpus(40, 0)
    params = Extract(models=[model.name], datasets=[dataset], **settings)
    points, problems = hook_points_for(params, ModelInfo(model.name, model.config))
    assert not problems, problems
    identity = ModelIdentity(model.name, "test", "test-revision", "float32", None)
    out = layout.extraction_dir(store, model.name, dataset)
    return extract(model, identity, source_of(docs, dataset), points, params, out, progress=False)


def activations(store: Path, where: str = "true") -> dict[tuple, np.ndarray]:
    """(hook, layer, doc_id, pos) -> vector, read through the SQL views."""
    con = connect(store)
    rows = con.execute(f"select hook, layer, doc_id, pos, act from activations where {where}").fetchall()
    return {(h, layer, d, p): np.asarray(a, dtype=np.float32) for h, layer, d, p, a in rows}
