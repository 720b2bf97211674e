"""The fact-recall task: a seeded table of facts "<subject> <relation> <object>", written as statements.

Subjects are multi-token: `subject_tokens` personal names of the corpus (`anna kenji`), so a model
must combine several tokens to know whose fact it is (each name appears in many subjects). Each
relation is a two-word phrase and has its own objects, all corpus words, so the word-level toy
tokenizer reads every statement and every prompt has the same length:

    <|bos|> anna kenji visits the | market .       prompt | object, then "."

Trained facts appear as statements in the training stream, mixed with corpus sentences; the subjects
of `unseen` facts never do (a control: recall on them is at the relation's base rate). The table is
written beside the model (`facts.json`), so the patching stage builds its prompts from exactly the
facts the model was trained on.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cortexlens.data.corpus import NAMES

FACTS_FILE = "facts.json"
FORMAT = "cortexlens.facts/1"

# relation -> (the phrase between subject and object, the objects it takes)
RELATIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    "visits": ("visits the", ("airport", "bakery", "cafe", "castle", "farm", "forest", "garden", "gym",
        "harbor", "hospital", "hotel", "island", "library", "market", "museum", "park", "pool", "river",
        "school", "stadium", "station", "temple", "university", "valley", "village")),
    "is": ("is a", ("baker", "chef", "coach", "doctor", "driver", "farmer", "guide", "pianist", "pilot",
        "referee", "singer", "teacher", "waiter", "drummer", "composer")),
    "plays": ("plays the", ("piano", "guitar", "drums")),
    "eats": ("eats the", ("apple", "bread", "cake", "cheese", "pasta", "rice", "salad", "soup", "sandwich",
        "pie", "carrot", "orange")),
    "drives": ("drives the", ("bus", "car", "truck", "ferry", "plane")),
}


@dataclass(frozen=True)
class Fact:
    subject: tuple[str, ...]  # words, e.g. ("anna", "kenji")
    relation: str  # a key of RELATIONS
    object: str

    @property
    def prompt(self) -> str:
        """What the model completes: `anna kenji visits the`."""
        return " ".join([*self.subject, RELATIONS[self.relation][0]])

    @property
    def statement(self) -> str:
        return f"{self.prompt} {self.object} ."


@dataclass(frozen=True)
class FactTable:
    trained: tuple[Fact, ...]
    unseen: tuple[Fact, ...]  # subjects never in the training stream
    subject_tokens: int

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "subject_tokens": self.subject_tokens,
                "trained": [asdict(f) for f in self.trained], "unseen": [asdict(f) for f in self.unseen]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FactTable:
        def facts(key: str) -> tuple[Fact, ...]:
            return tuple(Fact(tuple(f["subject"]), f["relation"], f["object"]) for f in data[key])
        return cls(facts("trained"), facts("unseen"), int(data["subject_tokens"]))

    def save(self, directory: Path) -> None:
        (Path(directory) / FACTS_FILE).write_text(json.dumps(self.to_json(), indent=1) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, directory: Path) -> FactTable:
        path = Path(directory) / FACTS_FILE
        try:
            return cls.from_json(json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: no fact table; is {directory} a model train_facts trained?") from None


def names() -> list[str]:
    return [n.lower() for n in NAMES.split()]


def max_subjects(subject_tokens: int) -> int:
    """Distinct subjects of `subject_tokens` different names."""
    n, total = len(names()), 1
    for i in range(subject_tokens):
        total *= n - i
    return total


def fact_table(n_subjects: int, n_unseen: int, subject_tokens: int, relations: list[str], seed: int) -> FactTable:
    """Seeded: subjects are distinct ordered tuples of different names; each (subject, relation) gets a
    uniformly drawn object of that relation."""
    rng = random.Random(seed)
    pool = names()
    chosen: list[tuple[str, ...]] = []
    seen: set[tuple[str, ...]] = set()
    while len(chosen) < n_subjects + n_unseen:  # rejection: cheap while far below max_subjects
        subject = tuple(rng.sample(pool, subject_tokens))
        if subject not in seen:
            seen.add(subject)
            chosen.append(subject)
    facts = [Fact(subject, r, rng.choice(RELATIONS[r][1])) for subject in chosen for r in relations]
    split = n_subjects * len(relations)
    return FactTable(tuple(facts[:split]), tuple(facts[split:]), subject_tokens)
