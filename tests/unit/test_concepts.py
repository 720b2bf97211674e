"""The built-in concept datasets: balance, determinism, groups for grouped folds, and ground truth."""

from __future__ import annotations

import re
from collections import Counter, defaultdict

import pytest
from pydantic import ValidationError
from sklearn.model_selection import GroupKFold

from cortexlens.config.messages import validation_lines
from cortexlens.config.schema import ConceptsDataset, Params
from cortexlens.data import concept_words as words
from cortexlens.data.concepts import CONCEPTS, MAX_GAP, generate_concepts, max_n_per_concept
from cortexlens.data.sources import open_dataset

N = 400
GROUP_DECIDES_CLASS = {"city_or_animal", "capital", "sentiment"}
BUILT_IN = "city_or_animal, capital, sentiment, entailment, negation_scope, larger_number"


@pytest.fixture(scope="module")
def docs():
    return generate_concepts(list(CONCEPTS), N, seed=0)


def of(docs, concept):
    return [d for d in docs if d.labels["concept"] == concept]


def test_registry():
    assert list(CONCEPTS) == ["city_or_animal", "capital", "sentiment", "entailment", "negation_scope",
                              "larger_number"]
    assert {name: info.tier for name, info in CONCEPTS.items()} == {
        "city_or_animal": "factual", "capital": "factual", "sentiment": "emotional",
        "entailment": "inferential", "negation_scope": "inferential", "larger_number": "inferential"}
    for name, info in CONCEPTS.items():
        assert len(set(info.labels)) == 2 and set(info.groups) == set(info.labels) and info.description
        assert max_n_per_concept(name) >= 400
    assert len(words.CAPITALS) >= 50 and len(words.NON_CAPITALS) >= 50
    assert len(words.CAPITALS + words.NON_CAPITALS) >= 60 and len(words.ANIMALS) >= 60
    assert len(words.POSITIVE) >= 40 and len(words.NEGATIVE) >= 40 and len(words.RELATIONS) >= 8
    for table in (words.CAPITALS + words.NON_CAPITALS, words.ANIMALS, words.POSITIVE + words.NEGATIVE,
                  words.NAMES):
        assert len(set(table)) == len(table)


def test_balance_ids_and_labels(docs):
    assert [d.doc_id for d in docs] == list(range(N * len(CONCEPTS)))
    assert len({d.text for d in docs}) == len(docs)  # no sentence repeats
    for name, info in CONCEPTS.items():
        assert Counter(d.labels["label"] for d in of(docs, name)) == dict.fromkeys(info.labels, N // 2)
    for doc in docs:
        assert set(doc.labels) == {"concept", "label", "group", "tier"}
        assert doc.labels["tier"] == CONCEPTS[doc.labels["concept"]].tier
        assert doc.labels["group"] in CONCEPTS[doc.labels["concept"]].groups[doc.labels["label"]]
        assert len(doc.text.split()) < 20 and doc.text[0].isupper() and doc.text.endswith(".")


def test_classes_interleaved(docs):
    # Shuffled within a concept, not all of one class then all of the other.
    first_half = of(docs, "capital")[: N // 2]
    assert 50 < sum(d.labels["label"] == "capital" for d in first_half) < 150


def test_deterministic_per_seed_and_different_across_seeds(docs):
    assert generate_concepts(list(CONCEPTS), N, seed=0) == docs
    other = generate_concepts(list(CONCEPTS), N, seed=1)
    assert len({d.text for d in other} & {d.text for d in docs}) < len(docs) // 4
    for name in CONCEPTS:  # every concept changes, not just some
        assert [d.text for d in of(other, name)] != [d.text for d in of(docs, name)]


def test_concept_does_not_depend_on_the_others_listed(docs):
    alone = generate_concepts(["sentiment"], N, seed=0)
    assert [(d.text, d.labels) for d in alone] == [(d.text, d.labels) for d in of(docs, "sentiment")]
    assert [d.doc_id for d in alone] == list(range(N))


@pytest.mark.parametrize("name", list(CONCEPTS))
def test_groups_support_grouped_folds(docs, name):
    concept = of(docs, name)
    by_label = defaultdict(set)
    for d in concept:
        by_label[d.labels["label"]].add(d.labels["group"])
    assert all(len(groups) >= 8 for groups in by_label.values()), {k: len(v) for k, v in by_label.items()}
    shared = set.intersection(*by_label.values())
    if name in GROUP_DECIDES_CLASS:
        assert not shared  # an unseen entity / adjective is the generalisation asked for
    else:
        assert len(shared) >= 8  # each class present in many groups
    # 5-fold grouped cross-validation: every test fold holds both classes.
    labels = [d.labels["label"] for d in concept]
    for _, test in GroupKFold(5).split(concept, labels, [d.labels["group"] for d in concept]):
        assert len({labels[i] for i in test}) == 2


def test_groups_spread_evenly(docs):
    for name in ("city_or_animal", "capital", "sentiment", "entailment", "negation_scope"):
        counts = Counter((d.labels["label"], d.labels["group"]) for d in of(docs, name))
        for label in CONCEPTS[name].labels:
            per_group = [c for (lab, _), c in counts.items() if lab == label]
            assert max(per_group) - min(per_group) <= 1, (name, label)


def test_group_word_is_in_the_sentence(docs):
    for name in ("city_or_animal", "capital", "sentiment", "negation_scope"):
        for d in of(docs, name):
            assert re.search(rf"\b{d.labels['group']}\b", d.text), d


def test_capital_facts(docs):
    groups = CONCEPTS["capital"].groups
    for city in ("Ottawa", "Canberra", "Ankara", "Brasilia", "New Delhi", "Wellington", "Paris"):
        assert city in groups["capital"]
    for city in ("Toronto", "Sydney", "Istanbul", "Mumbai", "New York", "Zurich", "Auckland"):
        assert city in groups["not_capital"]
    for d in of(docs, "capital"):
        assert d.labels["label"] == ("capital" if d.labels["group"] in words.CAPITALS else "not_capital")
    city_or_animal = CONCEPTS["city_or_animal"].groups
    assert "Ottawa" in city_or_animal["city"] and "tigers" in city_or_animal["animal"]


def test_no_article_or_template_gives_the_entity_class_away(docs):
    for name in ("city_or_animal", "capital"):
        templates = defaultdict(set)
        for d in of(docs, name):
            templates[d.text.replace(d.labels["group"], "{x}")].add(d.labels["label"])
        assert sum(len(labels) == 2 for labels in templates.values()) == 16  # every template, both classes
    for d in of(docs, "city_or_animal"):
        assert not re.search(rf"\b(a|an|the) {d.labels['group']}\b", d.text)


def _holds(premises: list[tuple[str, str, str]], claim: tuple[str, str, str]) -> bool:
    """Whether `claim` follows from `premises` by converses and transitivity (a tiny reasoner)."""
    orders = {}
    for _, relation, converse in words.RELATIONS:
        orders[relation], orders[converse] = (+1, relation), (-1, relation)
    greater = set()  # (x, y, relation): x stands above y on the relation's scale
    for a, phrase, b in premises:
        sign, scale = orders[phrase]
        greater.add((a, b, scale) if sign > 0 else (b, a, scale))
    changed = True
    while changed:
        new = {(x, w, s) for x, y, s in greater for y2, w, s2 in greater if y == y2 and s == s2} - greater
        greater |= new
        changed = bool(new)
    a, phrase, b = claim
    sign, scale = orders[phrase]
    return ((a, b, scale) if sign > 0 else (b, a, scale)) in greater


def _clause(text: str) -> tuple[str, str, str]:
    a, phrase, b = re.fullmatch(r"(\w+) (.+) (\w+)", text).groups()
    return a, phrase, b


def test_entailment_labels_follow_the_logic(docs):
    for d in of(docs, "entailment"):
        premises, claim = d.text.rstrip(".").split(", so ")
        follows = _holds([_clause(c) for c in premises.split(" and ")], _clause(claim))
        assert d.labels["label"] == ("follows" if follows else "does_not_follow"), d


def test_entailment_twins_have_the_same_bag_of_words(docs):
    bags = {label: Counter() for label in CONCEPTS["entailment"].labels}
    for d in of(docs, "entailment"):
        bags[d.labels["label"]][(d.labels["group"], tuple(sorted(re.findall(r"\w+", d.text))))] += 1
    assert bags["follows"] == bags["does_not_follow"]
    assert len(bags["follows"]) == N // 2
    # All three families, in about equal shares: A r B; A r B and B r C, so ... r ... / ... r' ...
    families = Counter()
    for d in of(docs, "entailment"):
        premises, claim = d.text.rstrip(".").split(", so ")
        if " and " not in premises:
            families["swap"] += 1
        else:
            same = _clause(premises.split(" and ")[0])[1] == _clause(claim)[1]
            families["chain" if same else "chain_swap"] += 1
    assert families.keys() == {"swap", "chain", "chain_swap"}
    assert families["chain"] == pytest.approx(N / 2, abs=N / 10)  # shares 1 : 2 : 1
    assert families["swap"] == pytest.approx(N / 4, abs=N / 10)


def test_entailment_name_order_alone_is_chance(docs):
    # "Follows when the conclusion starts with the last name of the premises" must not work.
    hits = 0
    for d in of(docs, "entailment"):
        premises, claim = d.text.rstrip(".").split(", so ")
        guess = claim.split()[0] == premises.split()[-1]
        hits += guess == (d.labels["label"] == "follows")
    assert hits / N == pytest.approx(0.5, abs=0.1)


def test_negation_scope_position_and_twins(docs):
    tails = {label: Counter() for label in CONCEPTS["negation_scope"].labels}
    for d in of(docs, "negation_scope"):
        toks = d.text.rstrip(".").split()
        assert toks[:3] == ["The", d.labels["group"], "that"] and toks.count("not") == 1
        assert (toks[3:5] == ["did", "not"]) == (d.labels["label"] == "relative"), d
        assert (toks[4:6] == ["did", "not"]) == (d.labels["label"] == "main"), d
        tails[d.labels["label"]][(d.labels["group"], " ".join(toks[toks.index("the"):]))] += 1
    assert tails["main"] == tails["relative"]  # minimal pairs: same subject, object and ending


def test_larger_number_labels_are_right():
    docs = generate_concepts(["larger_number"], max_n_per_concept("larger_number"), seed=4)
    pairs = {"first": Counter(), "second": Counter()}
    for d in docs:
        a, b = map(int, re.findall(r"\d+", d.text))
        assert 10 <= a <= 99 and 10 <= b <= 99 and 0 < abs(a - b) <= MAX_GAP
        assert d.labels["label"] == ("first" if a > b else "second") and d.labels["group"] == str(a)
        pairs[d.labels["label"]][frozenset((a, b))] += 1
    # Every sentence drawn: both classes hold the same pairs of numbers; only the order differs.
    assert pairs["first"] == pairs["second"]


def test_generator_errors():
    with pytest.raises(ValueError, match="must be even"):
        generate_concepts(["capital"], 41, seed=0)
    with pytest.raises(ValueError, match="unknown concept 'capitals'"):
        generate_concepts(["capitals"], 40, seed=0)
    limit = max_n_per_concept("capital")
    assert len(generate_concepts(["capital"], limit, seed=0)) == limit  # every sentence, once
    with pytest.raises(ValueError, match=f"at most {limit}"):
        generate_concepts(["capital"], limit + 2, seed=0)


def test_schema_defaults_and_messages():
    spec = ConceptsDataset(kind="concepts")
    assert spec.concepts == list(CONCEPTS) and spec.n_per_concept == 400 and spec.seed == 0
    with pytest.raises(ValidationError) as err:
        ConceptsDataset(kind="concepts", concepts=["capital", "colour"])
    assert err.value.errors()[0]["loc"] == ("concepts", 1)
    assert str(err.value.errors()[0]["ctx"]["error"]) == f"unknown concept 'colour' (built in: {BUILT_IN})"
    for n in (41, 38):
        with pytest.raises(ValidationError) as err:
            ConceptsDataset(kind="concepts", n_per_concept=n)
        assert err.value.errors()[0]["loc"] == ("n_per_concept",)
        assert str(err.value.errors()[0]["ctx"]["error"]) == f"must be even and >= 40 (half per class), got {n}"
    with pytest.raises(ValidationError, match="concept 'capital' is listed twice"):
        ConceptsDataset(kind="concepts", concepts=["capital", "capital"])
    with pytest.raises(ValidationError, match="at most"):
        ConceptsDataset(kind="concepts", concepts=["capital"], n_per_concept=10_000)
    data = {"datasets": {"c": {"kind": "concepts", "concepts": ["sentiment", "colour"]}}}
    with pytest.raises(ValidationError) as err:
        Params.model_validate(data)
    assert validation_lines(Params, err.value, data) == [
        f"datasets.c.concepts[1]: unknown concept 'colour' (built in: {BUILT_IN})"]


def test_open_dataset(tmp_path):
    spec = ConceptsDataset(kind="concepts", concepts=["capital", "larger_number"], n_per_concept=40, seed=3)
    source = open_dataset("probe", spec, tmp_path)
    assert len(source) == 80 and list(source) == generate_concepts(["capital", "larger_number"], 40, 3)
    assert list(source) == list(source)  # iterable more than once
    assert source.fingerprint == "concepts/1:capital,larger_number:40:3"
    assert open_dataset("probe", spec, tmp_path).fingerprint == source.fingerprint
    changed = ConceptsDataset(kind="concepts", concepts=["capital", "larger_number"], n_per_concept=40, seed=4)
    assert open_dataset("probe", changed, tmp_path).fingerprint != source.fingerprint
