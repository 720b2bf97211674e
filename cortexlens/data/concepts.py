"""The `concepts` datasets: short English sentences, each an example of one binary concept.

For layer-wise probing in graded tiers ("Exploring Concept Depth", Jin et al. 2024): a probe learns each
concept from pooled activations, with cross-validation folds grouped by lexical item (label `group`), so
a test sentence's content words were never seen in training.

    concept          tier         labels                     group            one sentence
    city_or_animal   factual      city | animal              the entity       "I read a long article about Lisbon."
    capital          factual      capital | not_capital      the city         "We flew to Ottawa last spring."
    sentiment        emotional    positive | negative        the adjective    "I thought the meal was superb."
    entailment       inferential  follows | does_not_follow  relation pair    "Ann is older than Ben, so Ben ..."
    negation_scope   inferential  main | relative            subject noun     "The chef that cooked did not eat ..."
    larger_number    inferential  first | second             first number     "The numbers are 47 and 31."

Design, per concept (word lists and templates in `concept_words`):
- city_or_animal: 16 templates, each natural with a city ("about Lisbon") and a bare plural animal
  ("about tigers"), so no article or preposition marks the class. The entity decides the class.
- capital: 66 national capitals vs 63 large non-capital cities (Sydney, Toronto, Istanbul) in 16 neutral
  travel templates; cities whose status is disputed, split or recently changed are left out.
- sentiment: 47 positive and 51 negative evaluative adjectives, 20 nouns (movie, meal, ...), 6 templates.
- entailment: 13 converse relation pairs (taller/shorter ... arrived before/after), 40 first names, in
  three families (shares 1 : 2 : 1), each drawn as a minimal pair with the same bag of words:
      A r B, so B r' A.                    vs  A r B, so A r' B.         (r' the converse of r)
      A r B and B r C, so A r C.           vs  ..., so C r A.
      A r B and B r C, so C r' A.          vs  ..., so A r' C.
  Neither cue alone decides: "the conclusion starts with the last name mentioned" is right for the
  first and third families, wrong for the second (50% overall); the words are the same in both classes.
- negation_scope: "The N that V1-ed did not V2 the O." (main) vs "The N that did not V1 V2-ed the O."
  (relative), drawn as minimal pairs. Per scene (kitchen, music, hunting, ...) every verb fits every
  object and reads with and without one, and V1, V2 come from the same verbs, so each verb form is
  equally common in both classes.
- larger_number: "The numbers are {a} and {b}." and 3 other templates; a and b differ, both in
  10..99, |a - b| <= MAX_GAP. In both classes every such pair {a, b} is equally likely; only the order
  differs. Groups are not spread evenly here (that would skew b): each sentence is equally likely.

Selection: per class, the n_per_concept/2 examples are spread as evenly as possible over the groups
(round-robin in a seeded order; a group gives at most its number of distinct sentences) and drawn
without replacement, so no sentence repeats; the minimal-pair concepts draw both twins together.
`ConceptInfo.sentences(label, group)` lists a group's sentences lazily. A concept's documents depend
only on (seed, concept), not on which other concepts are listed.

Remaining surface cues we know of (bag-of-words logistic regression, 5 grouped folds, n_per_concept=400:
word unigrams are at chance, 0.45-0.53, on every concept):
- city_or_animal: spelling. City names are capitalised, most animals end in "s", some cities are two
  words: character 2-4-grams score 0.89 on unseen entities.
- capital: spelling and word frequency (famous capitals are common tokens): character n-grams 0.59.
- sentiment: morphology ("un-" only in negative adjectives, "-less" mostly); character n-grams 0.48.
- negation_scope: the scope is word order, so word bigrams ("that did" vs "that cooked did") score 1.00:
  the concept is structural and shallow; read its depth against a control.
- larger_number: a number near 10 is more often the smaller one, near 99 the larger one, so one number
  alone predicts the class with 57% accuracy at best (MAX_GAP = 20; 85% without the gap limit).
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Literal

from cortexlens.data import concept_words as words
from cortexlens.data.corpus import Document

Tier = Literal["factual", "emotional", "inferential"]
MAX_GAP = 20  # larger_number: |a - b|; keeps the size of one number from giving the class away
_SCATTER = 1_000_003  # a prime above every slot size, so it is coprime with every family's length


class Product(Sequence[str]):
    """Every `render(*picks)` with one pick per slot, indexed lazily (mixed radix, last slot fastest)."""

    def __init__(self, render: Callable[..., str], *slots: Sequence) -> None:
        self.render, self.slots = render, slots

    def __len__(self) -> int:
        return math.prod(len(slot) for slot in self.slots)

    def __getitem__(self, i: int) -> str:  # type: ignore[override]
        if not 0 <= i < len(self):
            raise IndexError(i)
        picks = []
        for slot in reversed(self.slots):
            i, r = divmod(i, len(slot))
            picks.append(slot[r])
        return self.render(*reversed(picks))


class Arrangements(Sequence[tuple]):
    """Ordered k-tuples of distinct items (k-permutations), indexed lazily."""

    def __init__(self, items: Sequence, k: int) -> None:
        self.items, self.k = tuple(items), k

    def __len__(self) -> int:
        return math.perm(len(self.items), self.k)

    def __getitem__(self, i: int) -> tuple:  # type: ignore[override]
        if not 0 <= i < len(self):
            raise IndexError(i)
        pool, picks = list(self.items), []
        for _ in range(self.k):
            i, r = divmod(i, len(pool))
            picks.append(pool.pop(r))
        return tuple(picks)


class Interleave(Sequence[str]):
    """Equal shares of several families: index i is family i % n, scattered over all of that family."""

    def __init__(self, *families: Sequence[str]) -> None:
        self.families, self.share = families, min(len(f) for f in families)

    def __len__(self) -> int:
        return len(self.families) * self.share

    def __getitem__(self, i: int) -> str:  # type: ignore[override]
        if not 0 <= i < len(self):
            raise IndexError(i)
        family = self.families[i % len(self.families)]
        # j -> j * prime mod len is one-to-one and spreads a share over every slot value.
        return family[(i // len(self.families)) * _SCATTER % len(family)]


@dataclass(frozen=True)
class ConceptInfo:
    tier: Tier
    labels: tuple[str, str]
    description: str
    groups: dict[str, tuple[str, ...]]
    """Per class, the groups (lexical items or relations) holding its examples."""
    sentences: Callable[[str, str], Sequence[str]]
    """The generator: (label, group) -> every distinct sentence of that class and group, indexable."""
    paired: bool = False
    """The two classes' sentences at one (group, index) form a minimal pair, drawn together."""
    even_groups: bool = True
    """Spread each class evenly over its groups; False: every sentence of the class is equally likely."""


@cache
def _city_or_animal(label: str, entity: str) -> Sequence[str]:
    return Product(lambda template: template.format(x=entity), words.ENTITY_TEMPLATES)


@cache
def _capital(label: str, city: str) -> Sequence[str]:
    return Product(lambda template: template.format(c=city), words.CITY_TEMPLATES)


@cache
def _sentiment(label: str, adjective: str) -> Sequence[str]:
    return Product(lambda template, noun: template.format(noun=noun, adj=adjective),
                   words.SENTIMENT_TEMPLATES, words.SENTIMENT_NOUNS)


_RELATIONS = {group: (relation, converse) for group, relation, converse in words.RELATIONS}


@cache
def _entailment(label: str, group: str) -> Sequence[str]:
    follows = label == "follows"
    relation, converse = _RELATIONS[group]

    def swap(names: tuple[str, str], forward: bool) -> str:
        a, b = names
        r, s = (relation, converse) if forward else (converse, relation)
        return f"{a} {r} {b}, so {b} {s} {a}." if follows else f"{a} {r} {b}, so {a} {s} {b}."

    def chain(names: tuple[str, str, str], forward: bool) -> str:
        a, b, c = names
        r = relation if forward else converse
        return f"{a} {r} {b} and {b} {r} {c}, so " + (f"{a} {r} {c}." if follows else f"{c} {r} {a}.")

    def chain_swap(names: tuple[str, str, str], forward: bool) -> str:
        a, b, c = names
        r, s = (relation, converse) if forward else (converse, relation)
        return f"{a} {r} {b} and {b} {r} {c}, so " + (f"{c} {s} {a}." if follows else f"{a} {s} {c}.")

    pairs, triples, both_ways = Arrangements(words.NAMES, 2), Arrangements(words.NAMES, 3), (True, False)
    # `chain` twice (one share per direction): the name-order cue then scores 50%, not 67%.
    return Interleave(Product(swap, pairs, both_ways), Product(chain, triples, (True,)),
                      Product(chain, triples, (False,)), Product(chain_swap, triples, both_ways))


_SCENES = {noun: ([tuple(v.split("/")) for v in verbs.split()], objects.split())
           for nouns, verbs, objects in words.SCENES for noun in nouns.split()}


@cache
def _negation_scope(label: str, noun: str) -> Sequence[str]:
    verbs, objects = _SCENES[noun]

    def render(pair: tuple[tuple[str, str], tuple[str, str]], obj: str, ending: str) -> str:
        (v1, v1_past), (v2, v2_past) = pair
        if label == "main":
            return f"The {noun} that {v1_past} did not {v2} the {obj}{ending}."
        return f"The {noun} that did not {v1} {v2_past} the {obj}{ending}."

    return Product(render, Arrangements(verbs, 2), objects, words.NEGATION_ENDINGS)


@cache
def _larger_number(label: str, first: str) -> Sequence[str]:
    a = int(first)
    seconds = range(max(10, a - MAX_GAP), a) if label == "first" else range(a + 1, min(99, a + MAX_GAP) + 1)
    return Product(lambda template, b: template.format(a=a, b=b), words.NUMBER_TEMPLATES, seconds)


def _numbers(lo: int, hi: int) -> tuple[str, ...]:
    return tuple(str(n) for n in range(lo, hi + 1))


# Bumped whenever a generator's texts or labels change: part of the dataset fingerprint, so a store
# extracted by an older generator is extracted again.
CONCEPTS_VERSION = 1

CONCEPTS: dict[str, ConceptInfo] = {
    "city_or_animal": ConceptInfo(
        "factual", ("city", "animal"), "Is the entity mentioned a city or an animal?",
        {"city": words.CAPITALS + words.NON_CAPITALS, "animal": words.ANIMALS}, _city_or_animal),
    "capital": ConceptInfo(
        "factual", ("capital", "not_capital"), "Is the city mentioned its country's capital?",
        {"capital": words.CAPITALS, "not_capital": words.NON_CAPITALS}, _capital),
    "sentiment": ConceptInfo(
        "emotional", ("positive", "negative"), "Is the evaluation positive or negative?",
        {"positive": words.POSITIVE, "negative": words.NEGATIVE}, _sentiment),
    "entailment": ConceptInfo(
        "inferential", ("follows", "does_not_follow"), "Does the clause after 'so' follow from the ones before?",
        dict.fromkeys(("follows", "does_not_follow"), tuple(_RELATIONS)), _entailment, paired=True),
    "negation_scope": ConceptInfo(
        "inferential", ("main", "relative"), "Does 'not' negate the main clause or the relative clause?",
        dict.fromkeys(("main", "relative"), tuple(_SCENES)), _negation_scope, paired=True),
    "larger_number": ConceptInfo(
        "inferential", ("first", "second"), "Is the first or the second of two numbers the larger?",
        {"first": _numbers(11, 99), "second": _numbers(10, 98)}, _larger_number, even_groups=False),
}


@cache
def max_n_per_concept(name: str) -> int:
    """The largest n_per_concept the concept can fill with distinct sentences."""
    info = CONCEPTS[name]
    return 2 * min(sum(len(info.sentences(label, g)) for g in info.groups[label]) for label in info.labels)


def generate_concepts(names: list[str], n_per_concept: int, seed: int) -> list[Document]:
    """`n_per_concept` documents per concept, half of each class, concept after concept in `names`' order.

    Labels: `concept`, `label` (the class), `group` (the unit to group folds by) and `tier`.
    """
    if n_per_concept < 2 or n_per_concept % 2:
        raise ValueError(f"n_per_concept must be even and positive (half per class), got {n_per_concept}")
    for name in names:
        if name not in CONCEPTS:
            raise ValueError(f"unknown concept {name!r} (built in: {', '.join(CONCEPTS)})")
        if n_per_concept > max_n_per_concept(name):
            raise ValueError(f"n_per_concept ({n_per_concept}) is more than concept {name!r} has distinct "
                             f"sentences for (at most {max_n_per_concept(name)})")
    docs: list[Document] = []
    for name in names:
        tier = CONCEPTS[name].tier
        for label, group, text in _examples(name, n_per_concept // 2, seed):
            docs.append(Document(len(docs), text, {"concept": name, "group": group, "label": label, "tier": tier}))
    return docs


def _examples(name: str, per_class: int, seed: int) -> list[tuple[str, str, str]]:
    """(label, group, text) for one concept, classes interleaved in a seeded order."""
    info = CONCEPTS[name]
    rng = random.Random(f"concepts:{seed}:{name}")  # independent of the other concepts listed
    examples = []
    for label in info.labels[:1] if info.paired else info.labels:
        sizes = {group: len(info.sentences(label, group)) for group in info.groups[label]}
        for group, i in _draw(rng, sizes, per_class, info.even_groups):
            for drawn in info.labels if info.paired else (label,):
                examples.append((drawn, group, info.sentences(drawn, group)[i]))
    rng.shuffle(examples)
    return examples


def _draw(rng: random.Random, sizes: dict[str, int], total: int, even: bool) -> list[tuple[str, int]]:
    """`total` distinct (group, sentence index) pairs: spread evenly over the groups, or uniformly
    over all sentences (then a group with more sentences gets more)."""
    if even:
        return [(group, i) for group, count in _spread(rng, sizes, total).items()
                for i in rng.sample(range(sizes[group]), count)]
    groups, starts = list(sizes), list(itertools.accumulate(sizes.values(), initial=0))
    picks = []
    for flat in rng.sample(range(starts[-1]), total):
        k = bisect.bisect_right(starts, flat) - 1
        picks.append((groups[k], flat - starts[k]))
    return picks


def _spread(rng: random.Random, sizes: dict[str, int], total: int) -> dict[str, int]:
    """`total` examples over the groups as evenly as their sizes allow, the remainder to random groups."""
    order = rng.sample(list(sizes), len(sizes))
    counts = dict.fromkeys(order, 0)
    while total:
        room = [group for group in order if counts[group] < sizes[group]][:total]
        assert room, "more examples asked for than the groups hold"  # max_n_per_concept guards this
        for group in room:
            counts[group] += 1
        total -= len(room)
    return counts
