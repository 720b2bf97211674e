"""Train the toy induction model: a small Llama decoder on repeated random sequences, some of whose later
tokens are the first word again (`task.py`).

Deterministic on CPU: weights are initialised under `seeding.seeded(params.seed)` (the global RNG,
alone and restored afterwards) and batches come from a local generator.
Training batches use the seed stream `2 * seed`, held-out evaluation `2 * seed + 1`, the circuit
scores `2 * seed + 2`: they never meet.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from tqdm.auto import tqdm
from transformers import (
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    get_constant_schedule_with_warmup,
)

from cortexlens.config.schema import ToyArchitecture, TrainToy
from cortexlens.seeding import seeded
from cortexlens.toy.circuit import head_scores
from cortexlens.toy.evaluate import induction_accuracy
from cortexlens.toy.model import toy_config, toy_vocab_size
from cortexlens.toy.task import training_batch
from cortexlens.toy.tokenizer import build_toy_tokenizer

GRAD_CLIP = 1.0  # keeps the high-lr early steps stable
LOSS_WINDOW = 50  # final_train_loss averages the last steps: one batch is noisy

# batch(step) -> [batch, n_ctx] token ids
Batches = Callable[[int], torch.Tensor]


def train_seed(params: TrainToy) -> int:
    return 2 * params.seed


def eval_seed(params: TrainToy) -> int:
    return 2 * params.seed + 1


def score_seed(params: TrainToy) -> int:
    return 2 * params.seed + 2


def init_model(params: ToyArchitecture, vocab_size: int | None = None) -> LlamaForCausalLM:
    """Llama with biases on q, k, v; the output projections' biases (which `attention_bias` adds too)
    are zero and frozen: with them trained, the circuit does not form (see `toy.config`)."""
    config = toy_config(params, vocab_size if vocab_size is not None else toy_vocab_size())
    with seeded(params.seed):  # global RNG: alone, so a stage loading a model in another thread cannot reseed it
        model = LlamaForCausalLM(config)
    for layer in model.model.layers:
        torch.nn.init.zeros_(layer.self_attn.o_proj.bias)
        layer.self_attn.o_proj.bias.requires_grad_(False)
    return model


def _optimizer(model: PreTrainedModel, params: ToyArchitecture) -> torch.optim.AdamW:
    # Weight decay on matrices only: decaying norm gains and biases only hurts. Frozen ones are left out.
    trained = [p for p in model.parameters() if p.requires_grad]
    matrices = [p for p in trained if p.dim() >= 2]
    vectors = [p for p in trained if p.dim() < 2]
    groups = [{"params": matrices, "weight_decay": params.weight_decay}, {"params": vectors, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=params.lr)


def fit(model: PreTrainedModel, params: ToyArchitecture, batches: Batches, device: torch.device,
        progress: bool, desc: str) -> dict[str, float]:
    """AdamW (linear warm-up, then constant) on the LM loss at every position; the model ends in eval mode.

    Returns final_train_loss, n_params and train_seconds."""
    model.to(device).train()
    optimizer = _optimizer(model, params)
    schedule = get_constant_schedule_with_warmup(optimizer, params.warmup_steps)
    losses: list[float] = []
    started = time.perf_counter()
    bar = tqdm(range(params.steps), desc=desc, disable=not progress, mininterval=1.0)
    for step in bar:
        tokens = batches(step).to(device)  # [batch, pos]
        loss = model(input_ids=tokens, labels=tokens).loss  # shifted inside: position p predicts p + 1
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
        if step % 20 == 0:
            bar.set_postfix(loss=f"{losses[-1]:.3f}", refresh=False)
    model.eval()
    return {"final_train_loss": sum(losses[-LOSS_WINDOW:]) / len(losses[-LOSS_WINDOW:]),
            "n_params": float(sum(p.numel() for p in model.parameters())),
            "train_seconds": time.perf_counter() - started}


def train_toy(params: TrainToy, device: torch.device,
              progress: bool = True) -> tuple[LlamaForCausalLM, PreTrainedTokenizerFast, dict]:
    """Train the induction model. Returns it in eval mode, its tokenizer and metrics measured on held-out
    sequences: second/first copy accuracy, chance accuracy, every head's previous-token and
    prefix-matching scores (`heads`), the best of each in layers 0 and 1, final train loss, size, time."""
    tokenizer = build_toy_tokenizer()
    model = init_model(params)
    vocab_size = model.config.vocab_size
    assert vocab_size == len(tokenizer), "tokenizer and config disagree on the vocabulary"
    gen = torch.Generator().manual_seed(train_seed(params))
    fitted = fit(model, params, lambda step: training_batch(gen, params.batch_size, params, vocab_size),
                 device, progress, "train_toy")
    metrics: dict = induction_accuracy(model, params, params.eval_sequences, eval_seed(params), device)
    metrics.update(circuit_metrics(model, params, device))
    metrics.update(fitted)
    return model, tokenizer, metrics


def circuit_metrics(model: PreTrainedModel, params: TrainToy, device: torch.device) -> dict:
    """Every head's scores, the best previous-token head of layer 0 and prefix-matching head of the last
    layer (the two halves of the induction circuit), and the last layer's best first-token head."""
    scores = head_scores(model, params.score_sequences, params.score_length, score_seed(params), device)
    prev_head, prev = scores.best("previous_token", 0)
    last = scores.previous_token.shape[0] - 1
    match_head, match = scores.best("prefix_matching", last)
    first_head, first = scores.best("first_token", last)
    return {"heads": scores.metrics(), "previous_token_head": f"L0H{prev_head}", "previous_token_score": prev,
            "induction_head": f"L{last}H{match_head}", "prefix_matching_score": match,
            "first_token_head": f"L{last}H{first_head}", "first_token_score": first}
