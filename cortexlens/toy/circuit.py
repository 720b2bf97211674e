"""Does the toy model use the induction circuit? Every head's previous-token and prefix-matching score.

Measured from attention patterns on held-out sequences `<|bos|> A A`, A a segment of `length` random
tokens (positions 1..L hold the first copy, L+1..2L the second):

    previous-token score  = mean over p in [1, 2L] of attention(p -> p - 1)
    prefix-matching score = mean over p in [L + 1, 2L] of attention(p -> p - L + 1)
    first-token score     = mean over p in [L + 2, 2L] of attention(p -> 1)

The prefix-matching score is the attention a second-copy token pays to the token that followed its
own earlier occurrence: what an induction head attends to (Olsson et al. 2022). A previous-token head
in layer 0 and an induction head in layer 1 is the canonical two-layer circuit. The first-token
score finds the head that does train_toy's second job (copying the first word, `task.training_batch`);
the second copy's first query (p = L + 1) is left out: its token is the first word itself, so a head
that attends to earlier copies of the current token would look at position 1 there too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedModel

from cortexlens.models.attention import attention_patterns
from cortexlens.toy.tokenizer import BOS_ID, N_SPECIAL


@dataclass(frozen=True)
class HeadScores:
    previous_token: np.ndarray  # [n_layers, n_heads]
    prefix_matching: np.ndarray  # [n_layers, n_heads]
    first_token: np.ndarray  # [n_layers, n_heads]
    n_sequences: int
    length: int

    def best(self, score: str, layer: int) -> tuple[int, float]:
        """(head, score) of the highest `score` ('previous_token' | 'prefix_matching' | 'first_token') in
        `layer`."""
        row = getattr(self, score)[layer]
        head = int(np.argmax(row))
        return head, float(row[head])

    def rows(self) -> list[dict[str, Any]]:
        """One dict per (layer, head): what the `toy_heads` table holds."""
        n_layers, n_heads = self.previous_token.shape
        return [{"layer": layer, "head": head, "previous_token": float(self.previous_token[layer, head]),
                 "prefix_matching": float(self.prefix_matching[layer, head]),
                 "first_token": float(self.first_token[layer, head])}
                for layer in range(n_layers) for head in range(n_heads)]

    def metrics(self) -> dict[str, Any]:
        """Nested for train_toy's metrics file: heads.L<l>H<h>.{previous_token, prefix_matching, first_token}."""
        return {f"L{r['layer']}H{r['head']}": {key: r[key] for key in ("previous_token", "prefix_matching", "first_token")}
                for r in self.rows()}


def repeated_segments(gen: torch.Generator, n: int, length: int, vocab_size: int) -> torch.Tensor:
    """[n, 1 + 2 * length]: `<|bos|> A A`, every token of A uniform over the non-special ids."""
    segment = torch.randint(N_SPECIAL, vocab_size, (n, length), generator=gen)  # [n, L]
    bos = torch.full((n, 1), BOS_ID, dtype=torch.long)
    return torch.cat([bos, segment, segment], 1)


def scores_from_patterns(patterns: list[torch.Tensor], length: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(previous-token, prefix-matching, first-token) [n_layers, n_heads] from patterns [batch, heads, q, k]
    of `<|bos|> A A` sequences with |A| = length."""
    L = length
    prev_q = torch.arange(1, 2 * L + 1)  # every position after <|bos|>
    match_q = torch.arange(L + 1, 2 * L + 1)  # the second copy
    prev = [p[:, :, prev_q, prev_q - 1].mean((0, 2)) for p in patterns]  # [heads] per layer
    match = [p[:, :, match_q, match_q - L + 1].mean((0, 2)) for p in patterns]
    first = [p[:, :, L + 2:2 * L + 1, 1].mean((0, 2)) for p in patterns]
    return tuple(torch.stack(score).cpu().numpy() for score in (prev, match, first))


def head_scores(model: PreTrainedModel, n_sequences: int, length: int, seed: int,
                device: torch.device) -> HeadScores:
    """Every head's scores on `n_sequences` sequences drawn from `torch.Generator().manual_seed(seed)`."""
    tokens = repeated_segments(torch.Generator().manual_seed(seed), n_sequences, length,
                               model.config.vocab_size).to(device)  # [n, 1 + 2L]
    was_training = model.training
    model.eval()
    patterns = attention_patterns(model, {"input_ids": tokens})
    model.train(was_training)
    prev, match, first = scores_from_patterns(patterns, length)
    return HeadScores(prev, match, first, n_sequences, length)
