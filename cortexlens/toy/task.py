"""The induction task: a random segment repeated until the context is full.

Each sequence of `n_ctx` tokens (positions 0..n_ctx-1) is

    <|bos|> | A | A | A | ...   (the last copy cut at n_ctx)

with A a segment of L random tokens, L uniform in [min_repeat, max_repeat] per sequence, every token
drawn uniformly from the non-special ids [N_SPECIAL, vocab_size). Because L varies, no fixed positional
offset finds the answer: the model has to look up where the current token occurred before and copy the
token that followed it, which is what an induction head (with a previous-token head under it) does.
Position p holds A[(p - 1) mod L]. Position p predicts token p + 1; masks mark the positions scored:

    second_copy: p in [L + 1, 2L - 1]  -> targets A[1..L-1] of the second copy. The answer equals the token
                 after the previous occurrence of the current token, tokens[p + 1] == tokens[p + 1 - L].
                 The second copy's first token is left out: nothing announces where the repeat begins.
    first_copy:  p in [1, L - 1]       -> targets A[1..L-1] of the first copy: random, chance level.

Repeating past the second copy (rather than padding with random filler) puts most positions under the
induction signal, which is what lets a 2-layer model learn the circuit in a few hundred steps.

Training sequences (`training_batch`) give layer 1 a second job: after the first copy, each token is
replaced with probability `first_token_rate` by the sequence's first word (position 1). Predicting those
needs a head that attends to position 1, which an induction head cannot also be at the same query; without
it all four layer-1 heads became interchangeable induction heads (prefix matching 0.92-0.96), and nothing
could tell which head a latent of the attention output comes from (measured, README "The toy model").
Evaluation and the circuit scores use clean sequences (`induction_batch`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from cortexlens.config.schema import TrainToy
from cortexlens.toy.tokenizer import BOS_ID, N_SPECIAL


@dataclass(frozen=True)
class InductionBatch:
    tokens: torch.Tensor  # [batch, n_ctx] long
    second_copy: torch.Tensor  # [batch, n_ctx] bool: next token is predictable by induction
    first_copy: torch.Tensor  # [batch, n_ctx] bool: next token is random (chance level)
    repeat_len: torch.Tensor  # [batch] long: L


def induction_batch(gen: torch.Generator, batch_size: int, params: TrainToy, vocab_size: int) -> InductionBatch:
    """One batch, drawn from `gen` only, so equal generator states give equal batches."""
    n_ctx = params.n_ctx
    segments = torch.randint(N_SPECIAL, vocab_size, (batch_size, n_ctx), generator=gen)  # [batch, pos]
    lengths = torch.randint(params.min_repeat, params.max_repeat + 1, (batch_size,), generator=gen)  # [batch]
    pos = torch.arange(n_ctx).unsqueeze(0)  # [1, pos]
    L = lengths[:, None]  # [batch, 1]
    # Position p >= 1 holds A[(p - 1) mod L], and A[i] is stored at column 1 + i of `segments`.
    source = 1 + (pos - 1).clamp(min=0) % L  # [batch, pos]
    tokens = segments.gather(1, source)  # [batch, pos]
    tokens[:, 0] = BOS_ID
    second_copy = (pos >= L + 1) & (pos <= 2 * L - 1)  # [batch, pos]
    first_copy = (pos >= 1) & (pos <= L - 1)  # [batch, pos]
    return InductionBatch(tokens, second_copy, first_copy, lengths)


def training_batch(gen: torch.Generator, batch_size: int, params: TrainToy, vocab_size: int) -> torch.Tensor:
    """[batch, n_ctx] token ids: `induction_batch`, then each token after the first copy (p > L) replaced
    with probability `params.first_token_rate` by the first word (position 1). Drawn from `gen` only."""
    batch = induction_batch(gen, batch_size, params, vocab_size)
    tokens = batch.tokens  # [batch, pos]
    pos = torch.arange(params.n_ctx).unsqueeze(0)  # [1, pos]
    after_first_copy = pos > batch.repeat_len[:, None]  # [batch, pos]
    replaced = (torch.rand(tokens.shape, generator=gen) < params.first_token_rate) & after_first_copy
    return torch.where(replaced, tokens[:, 1:2], tokens)
