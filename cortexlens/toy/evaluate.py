"""Induction accuracy of a causal LM on held-out sequences of the induction task."""

from __future__ import annotations

import torch
from transformers import PreTrainedModel

from cortexlens.config.schema import TrainToy
from cortexlens.toy.task import induction_batch
from cortexlens.toy.tokenizer import N_SPECIAL

EVAL_BATCH = 256  # bounds memory; results do not depend on it


@torch.no_grad()
def induction_accuracy(model: PreTrainedModel, params: TrainToy, n_sequences: int, seed: int,
                       device: torch.device) -> dict[str, float]:
    """Top-1 next-token accuracy on the second and the first copy of the repeated segment.

    Sequences come from `torch.Generator().manual_seed(seed)`; pass a seed the training stream never uses.
    """
    vocab_size = model.config.vocab_size
    gen = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.eval()
    hits = {"second_copy": 0, "first_copy": 0}
    counts = {"second_copy": 0, "first_copy": 0}
    loss_sum, loss_count = 0.0, 0
    for start in range(0, n_sequences, EVAL_BATCH):
        batch = induction_batch(gen, min(EVAL_BATCH, n_sequences - start), params, vocab_size)
        tokens = batch.tokens.to(device)  # [batch, pos]
        logits = model(input_ids=tokens).logits.float()  # [batch, pos, vocab]
        predicted = logits[:, :-1].argmax(-1).cpu()  # [batch, pos - 1]
        correct = predicted == batch.tokens[:, 1:]  # [batch, pos - 1]: prediction at p is scored on p + 1
        for name in hits:
            mask = getattr(batch, name)[:, :-1]  # [batch, pos - 1]
            hits[name] += int(correct[mask].sum())
            counts[name] += int(mask.sum())
        nll = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), tokens[:, 1:], reduction="none")
        loss_sum += float(nll[batch.second_copy[:, :-1].to(device)].sum())
        loss_count += int(batch.second_copy.sum())
    model.train(was_training)
    return {
        "second_copy_accuracy": hits["second_copy"] / counts["second_copy"],
        "first_copy_accuracy": hits["first_copy"] / counts["first_copy"],
        "second_copy_loss": loss_sum / loss_count,
        "chance_accuracy": 1.0 / (vocab_size - N_SPECIAL),
    }
