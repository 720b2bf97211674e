"""Task datasets: clean and corrupted prompt pairs with an answer and a distractor (pure Python).

A pair's answer is the text that follows the clean prompt after a space (one token for the model), its
distractor what the corrupted prompt points to instead; the logit difference logit(answer) -
logit(distractor) at the last token is the metric. Built in:

* `induction` (the toy model's task): clean = A A[:-1] for a segment A of distinct random corpus words,
  answer A[-1]; corrupted = the same with A[-1] in the first copy replaced by a fresh word b, which is
  the distractor: induction now points to b. Only that one position differs.
* `facts` (the fact-recall model): clean = a trained fact's prompt (`anna kenji visits the`), answer its
  object; corrupted = the prompt of another subject whose fact of the same relation has another object
  (the distractor). The subject span is recorded for causal tracing.
* `ioi` (real causal LMs; Wang et al. 2022): "When Mary and John went to the store, John gave a drink
  to" -> Mary (the indirect object) over John (the subject); corrupted = the same template with three
  other names (the "ABC" distribution), so neither name is in it.
* files (JSONL or Parquet with fields clean, corrupted, answer, distractor, and optionally subject, a
  substring of clean).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from cortexlens.errors import ConfigError


@dataclass(frozen=True)
class PromptPair:
    clean: str
    corrupted: str
    answer: str  # follows the clean prompt after a space
    distractor: str
    subject: str | None = None  # a substring of `clean` (causal tracing noises its tokens)


def induction_pairs(n: int, length: int, words: list[str], seed: int) -> list[PromptPair]:
    rng = random.Random(seed)
    pairs = []
    for _ in range(n):
        chosen = rng.sample(words, length + 1)  # distinct: every word of A occurs once per copy
        segment, fresh = chosen[:length], chosen[length]
        clean = " ".join(segment + segment[:-1])
        corrupted = " ".join(segment[:-1] + [fresh] + segment[:-1])
        pairs.append(PromptPair(clean, corrupted, segment[-1], fresh))
    return pairs


def fact_pairs(facts: list, n: int, seed: int) -> list[PromptPair]:
    """`facts`: cortexlens.toy.facts.Fact objects the model was trained on."""
    rng = random.Random(seed)
    by_relation: dict[str, list] = {}
    for fact in facts:
        by_relation.setdefault(fact.relation, []).append(fact)
    usable = [f for f in facts if any(o.object != f.object for o in by_relation[f.relation])]
    pairs = []
    for fact in rng.sample(usable, min(n, len(usable))):
        other = rng.choice([o for o in by_relation[fact.relation] if o.object != fact.object])
        pairs.append(PromptPair(fact.prompt, other.prompt, fact.object, other.object, " ".join(fact.subject)))
    return pairs


# {S} is the subject's second mention: {B} in clean prompts, a third name in corrupted ones.
IOI_TEMPLATES = (
    "When {A} and {B} went to the {place}, {S} gave a {thing} to",
    "After {A} and {B} went to the {place}, {S} gave a {thing} to",
    "Then, {A} and {B} had a long argument, and afterwards {S} said to",
    "When {A} and {B} got a {thing} at the {place}, {S} decided to give it to",
)
IOI_NAMES = ("Mary", "John", "Tom", "James", "Anna", "Paul", "Sarah", "David", "Emma", "Kate", "Mark", "Laura",
             "Peter", "Lisa", "Susan", "Daniel", "Alice", "Robert", "Jane", "Michael")
IOI_PLACES = ("store", "park", "school", "hospital", "station", "office", "garden", "restaurant")
IOI_THINGS = ("drink", "book", "ring", "kiss", "bone", "basketball", "computer", "snack")


def ioi_pairs(n: int, seed: int, names: list[str] | None = None) -> list[PromptPair]:
    """`names`: the names usable with the model (one token each after a space); default IOI_NAMES."""
    rng = random.Random(seed)
    pool = list(names or IOI_NAMES)
    if len(pool) < 5:
        raise ValueError(f"ioi needs at least 5 single-token names, got {len(pool)}")
    pairs = []
    for _ in range(n):
        template = rng.choice(IOI_TEMPLATES)
        a, b, c, d, e = rng.sample(pool, 5)
        fill = {"place": rng.choice(IOI_PLACES), "thing": rng.choice(IOI_THINGS)}
        clean = template.format(A=a, B=b, S=b, **fill)
        corrupted = template.format(A=c, B=d, S=e, **fill)
        pairs.append(PromptPair(clean, corrupted, a, b))
    return pairs


FIELDS = ("clean", "corrupted", "answer", "distractor")


def file_pairs(path: Path, key: str, limit: int | None = None) -> list[PromptPair]:
    """Pairs from JSONL (one object per line) or Parquet; a bad row is one line naming file and row."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{key}: file not found: {path}")
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        rows = pq.read_table(path).to_pylist()
        where = "row"
    else:
        rows, where = [], "line"
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except ValueError as err:
                raise ConfigError(f"{key}: {path}:{number}: not JSON ({err})") from None
    pairs = []
    for number, row in enumerate(rows, 1):
        missing = [f for f in FIELDS if not isinstance(row.get(f), str) or not row[f]] if isinstance(row, dict) else FIELDS
        if missing:
            raise ConfigError(f"{key}: {path} {where} {number}: missing or empty field(s) {', '.join(missing)} "
                              f"(needs {', '.join(FIELDS)})")
        subject = row.get("subject")
        if subject is not None and subject not in row["clean"]:
            raise ConfigError(f"{key}: {path} {where} {number}: subject {subject!r} is not in the clean prompt")
        pairs.append(PromptPair(row["clean"], row["corrupted"], row["answer"], row["distractor"], subject))
    if not pairs:
        raise ConfigError(f"{key}: {path} holds no prompt pairs")
    return pairs[:limit] if limit else pairs
