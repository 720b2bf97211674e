"""A task's prompt pairs encoded for one model, checked before any forward pass.

Checks (each one line naming the task and the pair, a ConfigError, so the stage exits 2 before writing):
clean and corrupted prompts with different token counts (patching maps position p onto position p),
an answer or distractor that is not exactly one token, an answer equal to its distractor, a subject
that is not a whole run of the clean prompt's tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from cortexlens.errors import ConfigError
from cortexlens.models.hooked import HookedModel
from cortexlens.models.interventions import encode_prompts, real_columns
from cortexlens.patching.prompts import PromptPair


@dataclass(frozen=True)
class TaskBatch:
    name: str
    pairs: list[PromptPair]
    clean: dict[str, torch.Tensor]  # padded batch, [n, pos] each
    corrupted: dict[str, torch.Tensor]
    answer: torch.Tensor  # [n] token ids
    distractor: torch.Tensor  # [n]
    n_tokens: torch.Tensor  # [n] real tokens per prompt (equal in clean and corrupted)
    subject: torch.Tensor | None  # [n, pos] bool over padded clean columns, or None when no pair has one
    labels: list[str]  # the tokens of the first clean prompt (heatmap labels)

    def __len__(self) -> int:
        return len(self.pairs)

    @property
    def aligned(self) -> bool:
        """Every prompt has the same number of tokens, so position p means the same slot in all of them."""
        return bool((self.n_tokens == self.n_tokens[0]).all())

    def positions(self) -> list[int]:
        """Positions a (layer x position) sweep covers: every position when prompts align, else
        the last min(n_tokens) positions counted from the end (-1 the last token)."""
        n = int(self.n_tokens.min())
        return list(range(n)) if self.aligned else list(range(-n, 0))

    def subset(self, index: Sequence[int], name: str | None = None) -> TaskBatch:
        idx = torch.tensor(list(index), dtype=torch.long)
        pick = lambda batch: {k: v[idx.to(v.device)] for k, v in batch.items()}
        subject = None if self.subject is None else self.subject[idx.to(self.subject.device)]
        return TaskBatch(name or self.name, [self.pairs[i] for i in index], pick(self.clean), pick(self.corrupted),
                         self.answer[idx.to(self.answer.device)], self.distractor[idx.to(self.distractor.device)],
                         self.n_tokens[idx], subject, self.labels)


def single_token(model: HookedModel, text: str) -> int | None:
    """The id of `text` as a continuation (after a space), or None if it is not exactly one token."""
    ids = model.tokenizer(" " + text, add_special_tokens=False)["input_ids"]
    return ids[0] if len(ids) == 1 else None


def _subject_span(model: HookedModel, pair: PromptPair, n_tokens: int) -> tuple[int, int] | None:
    """[start, end) of the subject's tokens among the clean prompt's tokens, if they cover exactly it."""
    assert pair.subject is not None
    begin = pair.clean.index(pair.subject)
    finish = begin + len(pair.subject)
    enc = model.tokenizer(pair.clean, return_offsets_mapping=True)
    offsets = enc["offset_mapping"]
    if len(offsets) != n_tokens:
        return None
    inside = [i for i, (a, b) in enumerate(offsets) if b > a and a < finish and b > begin]
    if not inside or offsets[inside[0]][0] != begin or offsets[inside[-1]][1] != finish:
        return None
    return inside[0], inside[-1] + 1


def encode_task(model: HookedModel, name: str, pairs: list[PromptPair], key: str) -> TaskBatch:
    """Encode and check `pairs` (`key` names the task in errors, e.g. `patch.tasks[0]`)."""
    if not pairs:
        raise ConfigError(f"{key} ({name}): no prompt pairs")
    clean = encode_prompts(model, [p.clean for p in pairs])
    corrupted = encode_prompts(model, [p.corrupted for p in pairs])
    clean_cols, corrupted_cols = real_columns(clean["attention_mask"]), real_columns(corrupted["attention_mask"])
    problems, answers, distractors = [], [], []
    subject = torch.zeros(clean["attention_mask"].shape, dtype=torch.bool) if any(p.subject for p in pairs) else None
    for i, pair in enumerate(pairs):
        where = f"{key} ({name}): pair {i}"
        if len(clean_cols[i]) != len(corrupted_cols[i]):
            problems.append(f"{where}: the clean prompt has {len(clean_cols[i])} tokens, the corrupted one "
                            f"{len(corrupted_cols[i])}; positions must align ({pair.clean!r} / {pair.corrupted!r})")
        a, d = single_token(model, pair.answer), single_token(model, pair.distractor)
        for role, text, tid in (("answer", pair.answer, a), ("distractor", pair.distractor, d)):
            if tid is None:
                n = len(model.tokenizer(" " + text, add_special_tokens=False)["input_ids"])
                problems.append(f"{where}: {role} {text!r} is {n} tokens for {model.name}; it must be one")
        if a is not None and a == d:
            problems.append(f"{where}: answer and distractor are the same token {pair.answer!r}")
        answers.append(a or 0)
        distractors.append(d or 0)
        if pair.subject and subject is not None:
            span = _subject_span(model, pair, len(clean_cols[i]))
            if span is None:
                problems.append(f"{where}: subject {pair.subject!r} is not a whole run of the clean prompt's tokens")
            else:
                subject[i, clean_cols[i][span[0]:span[1]]] = True
    if problems:
        raise ConfigError(*problems[:10])
    first = clean["input_ids"][0, clean_cols[0]].tolist()
    labels = [str(t) for t in model.tokenizer.convert_ids_to_tokens(first)]
    n_tokens = torch.tensor([len(c) for c in clean_cols])
    return TaskBatch(name, list(pairs), clean, corrupted, torch.tensor(answers, device=model.device),
                     torch.tensor(distractors, device=model.device), n_tokens,
                     None if subject is None else subject.to(model.device), labels)
