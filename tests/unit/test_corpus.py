"""The built-in corpus grammar: determinism, variety, label ground truth and agreement."""

from __future__ import annotations

import itertools
import re
from collections import Counter

import pytest

from cortexlens.data.corpus import MAX_WORDS, MIN_WORDS, TOPICS, corpus_vocabulary, generate_corpus

EXPECTED_VALUES = {
    "tense": {"past", "present", "future"},
    "number": {"singular", "plural"},
    "person": {"first", "third"},
    "subject": {"noun", "name", "pronoun"},
    "negation": {"yes", "no"},
    "type": {"statement", "question"},
    "wh": {"none", "why", "where", "when"},
    "topic": set(TOPICS),
    "verb": {"transitive", "intransitive", "copula"},
    "conjunction": {"none", "and", "but", "so", "because", "while"},
    "relative": {"yes", "no"},
    "place": {"yes", "no"},
    "time": {"yes", "no"},
    "length": {"short", "medium", "long"},
}


@pytest.fixture(scope="module")
def corpus():
    return generate_corpus(2000, seed=0)


def tokens(text: str) -> list[str]:
    """Split like the toy tokenizer: lowercase words and single punctuation marks."""
    return re.findall(r"\w+|[^\w\s]", text.lower())


def words(text: str) -> list[str]:
    return [t for t in tokens(text) if t.isalpha()]


def test_same_seed_same_corpus_and_different_seed_different(corpus):
    assert generate_corpus(2000, seed=0) == corpus
    other = generate_corpus(2000, seed=1)
    assert [d.text for d in other] != [d.text for d in corpus]
    # Not merely reordered: most sentences differ.
    assert len({d.text for d in other} & {d.text for d in corpus}) < 200


def test_ids_and_uniqueness(corpus):
    assert [d.doc_id for d in corpus] == list(range(2000))
    assert len({d.text for d in corpus}) == 2000


def test_scales_to_20000_unique_sentences():
    texts = [d.text for d in generate_corpus(20_000, seed=3)]
    assert len(set(texts)) == 20_000


def test_prefix_property(corpus):
    assert generate_corpus(137, seed=0) == corpus[:137]


LEXICAL = {"subject_lemma", "verb_lemma"}  # lexical items: the groups probes are cross-validated over


def test_every_label_and_value_occurs(corpus):
    for doc in corpus:
        assert set(doc.labels) == set(EXPECTED_VALUES) | LEXICAL
    for key, values in EXPECTED_VALUES.items():
        seen = Counter(d.labels[key] for d in corpus)
        assert set(seen) == values, key
        # Every value is common enough to probe (at least 2% of documents).
        assert min(seen.values()) >= 40, (key, seen)


def test_word_counts_in_range_and_varied(corpus):
    counts = [len(words(d.text)) for d in corpus]
    assert min(counts) >= MIN_WORDS and max(counts) <= MAX_WORDS
    assert min(counts) <= 6 and max(counts) >= 20


def test_length_label_matches_word_count(corpus):
    for doc in corpus:
        n = len(words(doc.text))
        expected = "short" if n <= 10 else "medium" if n <= 18 else "long"
        assert doc.labels["length"] == expected, doc


def test_vocabulary_covers_every_token():
    vocab = corpus_vocabulary()
    assert vocab == sorted(set(vocab)) and vocab == corpus_vocabulary()
    emitted = {t for d in generate_corpus(20_000, seed=5) for t in tokens(d.text)}
    assert emitted <= set(vocab), emitted - set(vocab)


def test_type_label_matches_punctuation(corpus):
    for doc in corpus:
        assert doc.text.endswith("?" if doc.labels["type"] == "question" else "."), doc
        assert doc.text[0].isupper()


def test_negation_and_tense_markers(corpus):
    for doc in corpus:
        toks = tokens(doc.text)
        assert ("not" in toks) == (doc.labels["negation"] == "yes"), doc
        # Only future sentences use "will"; every future sentence does.
        assert ("will" in toks) == (doc.labels["tense"] == "future"), doc


def test_plural_present_statements_never_use_singular_verbs(corpus):
    singular_forms = {"is", "was", "does", "am"}
    plural_present = [d for d in corpus if d.labels["number"] == "plural" and d.labels["tense"] == "present"
                      and d.labels["type"] == "statement" and d.labels["conjunction"] == "none"
                      and d.labels["relative"] == "no"]
    assert len(plural_present) > 50
    for doc in plural_present:
        assert not singular_forms & set(tokens(doc.text)), doc


def test_singular_copula_agrees(corpus):
    # Main-clause copula of a simple singular third-person sentence: is / was / will be, never are / were.
    simple = [d for d in corpus if d.labels["verb"] == "copula" and d.labels["number"] == "singular"
              and d.labels["person"] == "third" and d.labels["conjunction"] == "none"
              and d.labels["relative"] == "no"]
    assert len(simple) > 30
    for doc in simple:
        toks = set(tokens(doc.text))
        assert not {"are", "were", "am"} & toks, doc
        assert {"is", "was", "be"} & toks, doc


def test_first_person_singular_uses_am_or_was():
    docs = [d for d in generate_corpus(5000, seed=2) if d.text.startswith("I ") and d.labels["verb"] == "copula"
            and d.labels["tense"] != "future"]
    assert docs
    for doc in docs:
        assert tokens(doc.text)[1] in ("am", "was"), doc


def test_articles_follow_the_next_word(corpus):
    for doc in corpus:
        toks = tokens(doc.text)
        for article, nxt in itertools.pairwise(toks):
            if article in ("a", "an"):
                assert (article == "an") == (nxt[0] in "aeiou"), doc


def test_questions_invert_the_auxiliary(corpus):
    auxiliaries = {"do", "does", "did", "will", "am", "is", "are", "was", "were"}
    for doc in corpus:
        if doc.labels["type"] != "question":
            continue
        toks = tokens(doc.text)
        head = toks[1] if doc.labels["wh"] != "none" else toks[0]
        assert head in auxiliaries, doc
        if doc.labels["wh"] != "none":
            assert toks[0] == doc.labels["wh"]


def test_lexical_items_are_labelled_independently_of_number_and_tense(corpus):
    """Grouping by lemma must not give away the label a probe learns: most lemmas take both numbers
    (nouns) and every tense (verbs)."""
    by_verb, by_noun = {}, {}
    for d in corpus:
        by_verb.setdefault(d.labels["verb_lemma"], set()).add(d.labels["tense"])
        if d.labels["subject"] == "noun":
            by_noun.setdefault(d.labels["subject_lemma"], set()).add(d.labels["number"])
    assert len(by_verb) >= 40 and len(by_noun) >= 40
    assert sum(len(t) == 3 for t in by_verb.values()) >= 0.8 * len(by_verb)
    assert sum(len(n) == 2 for n in by_noun.values()) >= 0.8 * len(by_noun)
    assert "be" in by_verb  # the copula is a verb lemma like any other
