"""Activations an extraction did not store, computed from documents with the extraction's settings.

An analysis that needs a hook point the study did not extract (mlp_post for sparsity, say), or a
dataset it did not extract, runs the model over the documents, tokenised exactly as extraction does
(max length capped at the model's context, padding side, position ids from the mask), and gets the
same `ActivationBatch` rows the store reader gives for extracted points: same tokens, same order
(doc_id, then pos), plus their token ids.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

from cortexlens.data.corpus import Document
from cortexlens.extraction.batches import accepts_position_ids, token_rows, tokenize_batch
from cortexlens.extraction.writers import flatten_tokens
from cortexlens.models.hooked import HookedModel
from cortexlens.models.hooks import HookPoint
from cortexlens.store.reader import ActivationBatch


def capped_length(model: HookedModel, max_length: int) -> int:
    """`max_length`, capped at the model's context (as extraction caps it)."""
    limit = model.context_length
    return max_length if limit is None else min(max_length, limit)


def iter_model_activations(model: HookedModel, docs: Sequence[Document], points: Sequence[HookPoint],
                           max_length: int, padding_side: str = "right",
                           batch_size: int = 32) -> Iterator[ActivationBatch]:
    """Rows of `points` for every real token of `docs`, batch by batch (memory: one batch)."""
    use_position_ids = accepts_position_ids(model.model)
    length = capped_length(model, max_length)
    for start in range(0, len(docs), batch_size):
        batch = tokenize_batch(list(docs[start:start + batch_size]), model.tokenizer, length, padding_side,
                               model.device, use_position_ids)
        with torch.inference_mode():
            cache = model.run_with_cache(batch.inputs, points)
        doc_id, pos, token_id = token_rows(batch)
        acts = {point: flatten_tokens(cache[point], point, batch).flatten(0, 1).index_select(0, batch.rows)
                .float().cpu().numpy() for point in points}  # [tokens, width]
        yield ActivationBatch(doc_id, pos, acts, token_id)


def encoded_batches(model: HookedModel, docs: Sequence[Document], max_length: int, padding_side: str = "right",
                    batch_size: int = 32) -> list[dict[str, torch.Tensor]]:
    """Model inputs for `docs`, tokenised as extraction does (for runs that need the outputs)."""
    use_position_ids = accepts_position_ids(model.model)
    length = capped_length(model, max_length)
    return [tokenize_batch(list(docs[i:i + batch_size]), model.tokenizer, length, padding_side, model.device,
                           use_position_ids).inputs for i in range(0, len(docs), batch_size)]
