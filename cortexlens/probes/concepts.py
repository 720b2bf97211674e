"""Which documents and labels a concept is: built-in concepts by name, user concepts spelled out.

Built in:
- the built-in corpus's labels `tense`, `number`, `negation`, `topic` (folds grouped by the main
  verb's lemma for tense, negation and topic, by the subject's lemma for number: a probe is tested on
  verbs or nouns it never saw);
- the generated concepts of a `concepts` dataset (`cortexlens/data/concepts.py`: city_or_animal,
  capital, sentiment, entailment, negation_scope, larger_number), grouped by their lexical item.
A user concept names a dataset, the label field that holds the class, optionally the label field of
its lexical item (without one, every document is its own group) and label values to keep.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import Field

from cortexlens.config.schema import BuiltinCorpus, ConceptsDataset, Name, Section
from cortexlens.data.concepts import CONCEPTS

if TYPE_CHECKING:
    from cortexlens.config.study import Study

# concept -> (label field, group field) in the built-in corpus
CORPUS_CONCEPTS: dict[str, tuple[str, str]] = {
    "tense": ("tense", "verb_lemma"),
    "number": ("number", "subject_lemma"),
    "negation": ("negation", "verb_lemma"),
    "topic": ("topic", "verb_lemma"),
}
BUILTIN_CONCEPTS: tuple[str, ...] = (*CORPUS_CONCEPTS, *CONCEPTS)


class ConceptSpec(Section):
    """A user concept: documents of `dataset` whose labels hold the class in `label`."""

    name: Name
    dataset: Name
    label: str
    """The label field holding the class (a column or JSON field of the dataset)."""
    group: str | None = None
    """The label field holding each document's lexical item; folds never split one. None: no grouping."""
    where: dict[str, str] = Field(default_factory=dict)
    """Keep only documents whose labels equal these."""


@dataclass(frozen=True)
class Concept:
    name: str
    dataset: str
    label: str
    group: str | None
    where: dict[str, str]
    tier: str  # factual | emotional | inferential | corpus | user


def resolve(study: Study, entry: str | ConceptSpec, key: str) -> Concept:
    """The concept an entry of probe.concepts names; ValueError("<key>: ...") when it cannot be found."""
    datasets = study.params.datasets
    extracted = study.params.extract.datasets if study.params.extract else []
    if isinstance(entry, ConceptSpec):
        if entry.dataset not in extracted:
            raise ValueError(f"{key}.dataset: {entry.dataset!r} is not in extract.datasets ({', '.join(extracted)})")
        return Concept(entry.name, entry.dataset, entry.label, entry.group, dict(entry.where), "user")
    if entry in CORPUS_CONCEPTS:
        found = [d for d in extracted if isinstance(datasets.get(d), BuiltinCorpus)]
        if not found:
            raise ValueError(f"{key}: {entry!r} is a label of the built-in corpus, and no dataset of kind "
                             f"builtin is in extract.datasets")
        label, group = CORPUS_CONCEPTS[entry]
        return Concept(entry, found[0], label, group, {}, "corpus")
    if entry in CONCEPTS:
        found = [d for d in extracted if isinstance(datasets.get(d), ConceptsDataset)
                 and entry in datasets[d].concepts]
        if not found:
            raise ValueError(f"{key}: {entry!r} needs a dataset of kind concepts that generates it in "
                             f"extract.datasets")
        return Concept(entry, found[0], "label", "group", {"concept": entry}, CONCEPTS[entry].tier)
    raise ValueError(f"{key}: unknown concept {entry!r} (built in: {', '.join(BUILTIN_CONCEPTS)}; or give "
                     f"{{name, dataset, label, group}})")
