"""Train the fact-recall model: the toy architecture on fact statements mixed with corpus sentences.

Each training sequence is `<|bos|>` and then documents drawn at random (a trained fact's statement
with probability `fact_fraction`, else a corpus sentence) until `n_ctx` tokens are filled, so a fact
is seen at many offsets and next to ordinary text. Recall is measured on the bare prompts
(`<|bos|> anna kenji visits the`), top-1 over the whole vocabulary.
"""

from __future__ import annotations

import random

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerFast

from cortexlens.config.schema import TrainFacts
from cortexlens.data.corpus import generate_corpus
from cortexlens.toy.facts import RELATIONS, Fact, FactTable, fact_table
from cortexlens.toy.tokenizer import BOS_ID, UNK_ID, build_toy_tokenizer
from cortexlens.toy.train import fit, init_model

EVAL_BATCH = 256


def table_for(params: TrainFacts) -> FactTable:
    return fact_table(params.n_subjects, params.n_unseen, params.subject_tokens, list(params.relations),
                      params.facts_seed)


class FactStream:
    """Training batches drawn from `random.Random(seed)` only: equal seeds give equal batches."""

    def __init__(self, table: FactTable, params: TrainFacts, tokenizer: PreTrainedTokenizerFast) -> None:
        def ids(text: str) -> list[int]:
            out = tokenizer(text, add_special_tokens=False)["input_ids"]
            assert UNK_ID not in out, f"not in the toy vocabulary: {text!r}"
            return out
        self.statements = [ids(f.statement) for f in table.trained]
        self.sentences = [ids(d.text) for d in generate_corpus(params.corpus_docs, params.seed)]
        self.params = params
        self.rng = random.Random(2 * params.seed)

    def sequence(self) -> list[int]:
        out = [BOS_ID]
        while len(out) < self.params.n_ctx:
            pool = self.statements if self.rng.random() < self.params.fact_fraction else self.sentences
            out += pool[self.rng.randrange(len(pool))]
        return out[:self.params.n_ctx]

    def batch(self, step: int) -> torch.Tensor:
        return torch.tensor([self.sequence() for _ in range(self.params.batch_size)])  # [batch, n_ctx]


@torch.no_grad()
def recall(model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast, facts: tuple[Fact, ...],
           device: torch.device) -> float:
    """Top-1 accuracy of the object at the prompt's last token (all prompts have the same length)."""
    hits = 0
    for start in range(0, len(facts), EVAL_BATCH):
        chunk = facts[start:start + EVAL_BATCH]
        ids = torch.tensor([tokenizer(f.prompt)["input_ids"] for f in chunk], device=device)  # [batch, pos]
        objects = torch.tensor(tokenizer.convert_tokens_to_ids([f.object for f in chunk]), device=device)
        hits += int((model(input_ids=ids).logits[:, -1].argmax(-1) == objects).sum())
    return hits / len(facts)


def train_facts(params: TrainFacts, device: torch.device,
                progress: bool = True) -> tuple[PreTrainedModel, PreTrainedTokenizerFast, FactTable, dict]:
    """The model (eval mode), its tokenizer, the fact table and metrics: recall on trained facts and on
    unseen subjects (the control), the relations' base rate, final train loss, size and time."""
    tokenizer = build_toy_tokenizer()
    table = table_for(params)
    model = init_model(params, len(tokenizer))
    stream = FactStream(table, params, tokenizer)
    fitted = fit(model, params, stream.batch, device, progress, "train_facts")
    metrics = {
        "recall_accuracy": recall(model, tokenizer, table.trained, device),
        "unseen_accuracy": recall(model, tokenizer, table.unseen, device) if table.unseen else None,
        # guessing a relation's objects uniformly; an unseen subject can do no better on average
        "chance_accuracy": sum(1 / len(RELATIONS[r][1]) for r in params.relations) / len(params.relations),
        "n_facts": len(table.trained),
        **fitted,
    }
    return model, tokenizer, table, metrics
