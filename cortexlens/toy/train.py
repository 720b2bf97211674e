"""Train the toy induction model: a small GPT-2 on repeated random sequences (see `task.py`).

Deterministic on CPU: weights are initialised under `seeding.seeded(params.seed)` (the global RNG,
alone and restored afterwards) and batches come from a local generator.
Training batches use the seed stream `2 * seed`, held-out evaluation `2 * seed + 1`: they never meet.
"""

from __future__ import annotations

import time

import torch
from tqdm.auto import tqdm
from transformers import GPT2LMHeadModel, PreTrainedTokenizerFast, get_cosine_schedule_with_warmup

from cortexlens.config.schema import TrainToy
from cortexlens.seeding import seeded
from cortexlens.toy.evaluate import induction_accuracy
from cortexlens.toy.model import toy_config, toy_vocab_size
from cortexlens.toy.task import induction_batch
from cortexlens.toy.tokenizer import build_toy_tokenizer

GRAD_CLIP = 1.0  # the usual GPT-2 value; keeps the high-lr early steps stable
LOSS_WINDOW = 50  # final_train_loss averages the last steps: one batch is noisy


def train_seed(params: TrainToy) -> int:
    return 2 * params.seed


def eval_seed(params: TrainToy) -> int:
    return 2 * params.seed + 1


def init_model(params: TrainToy) -> GPT2LMHeadModel:
    config = toy_config(params, toy_vocab_size())
    with seeded(params.seed):  # global RNG: alone, so a stage loading a model in another thread cannot reseed it
        return GPT2LMHeadModel(config)


def _optimizer(model: GPT2LMHeadModel, params: TrainToy) -> torch.optim.AdamW:
    # Weight decay on matrices only: decaying LayerNorm gains and biases only hurts.
    matrices = [p for p in model.parameters() if p.dim() >= 2]
    vectors = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": matrices, "weight_decay": params.weight_decay}, {"params": vectors, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=params.lr)


def train_toy(params: TrainToy, device: torch.device,
              progress: bool = True) -> tuple[GPT2LMHeadModel, PreTrainedTokenizerFast, dict[str, float]]:
    """Train with AdamW (linear warmup, cosine decay) on the LM loss at every position.

    Returns the model in eval mode, its tokenizer and metrics measured on `params.eval_sequences`
    held-out sequences: second/first copy accuracy, chance accuracy, final train loss, size and time.
    """
    tokenizer = build_toy_tokenizer()
    model = init_model(params).to(device).train()
    vocab_size = model.config.vocab_size
    assert vocab_size == len(tokenizer), "tokenizer and config disagree on the vocabulary"
    optimizer = _optimizer(model, params)
    schedule = get_cosine_schedule_with_warmup(optimizer, params.warmup_steps, params.steps)
    gen = torch.Generator().manual_seed(train_seed(params))
    losses: list[float] = []
    started = time.perf_counter()
    bar = tqdm(range(params.steps), desc="train_toy", disable=not progress, mininterval=1.0)
    for step in bar:
        tokens = induction_batch(gen, params.batch_size, params, vocab_size).tokens.to(device)  # [batch, pos]
        loss = model(input_ids=tokens, labels=tokens).loss  # shifted inside: position p predicts p + 1
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
        if step % 20 == 0:
            bar.set_postfix(loss=f"{losses[-1]:.3f}", refresh=False)
    train_seconds = time.perf_counter() - started
    model.eval()
    metrics = induction_accuracy(model, params, params.eval_sequences, eval_seed(params), device)
    metrics.update(
        final_train_loss=sum(losses[-LOSS_WINDOW:]) / len(losses[-LOSS_WINDOW:]),
        n_params=float(sum(p.numel() for p in model.parameters())),
        train_seconds=train_seconds,
    )
    return model, tokenizer, metrics
