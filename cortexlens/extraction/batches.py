"""Tokenize documents into padded batches whose activations do not depend on padding.

Position ids are computed from the attention mask, so a left-padded batch gives each token the
same position (and therefore the same activations) as a right-padded one.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from cortexlens.data.corpus import Document


@dataclass
class TokenBatch:
    docs: list[Document]
    inputs: dict[str, torch.Tensor]  # what the model's forward receives
    mask: torch.Tensor  # [batch, pos] bool, True at real tokens, on the model's device
    doc_ids: np.ndarray  # [batch] int64
    n_tokens: np.ndarray  # [batch] int32 tokens kept per document
    truncated: np.ndarray  # [batch] bool
    rows: torch.Tensor  # [n_tokens] indices of real tokens in the flattened [batch * pos], on the device

    @property
    def input_ids(self) -> torch.Tensor:
        return self.inputs["input_ids"]


def accepts_position_ids(model: PreTrainedModel) -> bool:
    return "position_ids" in inspect.signature(model.forward).parameters


def tokenize_batch(docs: list[Document], tokenizer: PreTrainedTokenizerBase, max_length: int,
                   padding_side: str, device: torch.device, position_ids: bool) -> TokenBatch:
    texts = [doc.text for doc in docs]
    tokenizer.padding_side = padding_side
    encoded = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    mask = encoded["attention_mask"].bool()  # [batch, pos]
    n_tokens = mask.sum(-1).numpy().astype(np.int32)
    inputs = {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}
    # Segment ids matter only for sentence pairs. A single text gets all zeros, which BERT-style
    # models assume anyway, while GPT-2 would add wte(0) to every position if given them (a GPT-2 with
    # a BERT tokenizer, as in the tiny test models): pass them only when they say something.
    if "token_type_ids" in encoded and bool(encoded["token_type_ids"].any()):
        inputs["token_type_ids"] = encoded["token_type_ids"]
    if position_ids:
        inputs["position_ids"] = (mask.long().cumsum(-1) - 1).clamp(min=0)  # [batch, pos]
    return TokenBatch(
        docs=docs,
        inputs={k: v.to(device) for k, v in inputs.items()},
        mask=mask.to(device),
        doc_ids=np.array([doc.doc_id for doc in docs], dtype=np.int64),
        n_tokens=n_tokens,
        truncated=_truncated(tokenizer, texts, encoded, n_tokens),
        rows=mask.flatten().nonzero().squeeze(1).to(device),
    )


def length_order(docs: list[Document], tokenizer: PreTrainedTokenizerBase, max_length: int) -> np.ndarray:
    """[docs] indices of `docs` from fewest to most tokens (ties in corpus order): batches cut from
    this order pad to lengths close to their documents', so the forward pass computes less padding."""
    ids = tokenizer([doc.text for doc in docs], truncation=True, max_length=max_length)["input_ids"]
    return np.argsort(np.array([len(i) for i in ids]), kind="stable")


def _truncated(tokenizer: PreTrainedTokenizerBase, texts: list[str], encoded, n_tokens: np.ndarray) -> np.ndarray:
    """Which documents lost tokens to max_length ([batch] bool)."""
    if encoded.encodings is not None:  # fast tokenizers keep what truncation cut off
        return np.array([len(e.overflowing) > 0 for e in encoded.encodings])
    return np.array([len(ids) for ids in tokenizer(texts)["input_ids"]]) > n_tokens


def token_rows(batch: TokenBatch) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """doc_id, pos and token_id of every real token, batch-major then position order ([n_tokens] each)."""
    mask = batch.mask.cpu()
    pos = (mask.long().cumsum(-1) - 1)[mask].numpy().astype(np.int32)
    doc_ids = np.repeat(batch.doc_ids, batch.n_tokens)
    token_ids = batch.input_ids.cpu()[mask].numpy().astype(np.int32)
    return doc_ids, pos, token_ids
