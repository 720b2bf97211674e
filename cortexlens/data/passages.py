"""The `passages` dataset: sentence stimuli grouped in passages, as brain-alignment studies present them.

Pereira et al. (2018) showed participants short passages, each a few sentences on one topic; encoding
models are then cross-validated with whole passages held out. This generator does the same with the
built-in grammar (`cortexlens.data.corpus`): passage p has topic `TOPICS[p % 8]` (so topics are balanced)
and takes the next `sentences_per_passage` distinct sentences of that topic from the seeded corpus
stream. Documents are ordered passage by passage (doc_id = p * sentences_per_passage + position).

Labels: `stimulus_id` (the doc_id as text), `group` (the passage, `p000`), `passage_position`, and every
label the grammar gives the sentence (`topic`, `tense`, `number`, `negation`, `type`, `length`, ...),
which are its own choices, never read back from a model. Deterministic in (n_passages,
sentences_per_passage, seed).
"""

from __future__ import annotations

from cortexlens.data.corpus import TOPICS, Document, generate_corpus

PASSAGES_VERSION = 1  # bump when texts or labels change: part of the dataset fingerprint


def generate_passages(n_passages: int, sentences_per_passage: int, seed: int) -> list[Document]:
    topics = list(TOPICS)
    wanted = {t: sum(1 for p in range(n_passages) if topics[p % len(topics)] == t) * sentences_per_passage
              for t in topics}
    by_topic = _sentences_by_topic(wanted, seed)
    docs: list[Document] = []
    taken = dict.fromkeys(topics, 0)
    for p in range(n_passages):
        topic = topics[p % len(topics)]
        for position in range(sentences_per_passage):
            sentence = by_topic[topic][taken[topic]]
            taken[topic] += 1
            doc_id = len(docs)
            labels = {**sentence.labels, "stimulus_id": str(doc_id), "group": f"p{p:03d}",
                      "passage_position": str(position)}
            docs.append(Document(doc_id, sentence.text, dict(sorted(labels.items()))))
    return docs


def _sentences_by_topic(wanted: dict[str, int], seed: int) -> dict[str, list[Document]]:
    """At least `wanted[t]` sentences of each topic, in corpus order (a longer corpus extends a shorter one)."""
    n = max(64, 2 * sum(wanted.values()))
    while True:
        by_topic: dict[str, list[Document]] = {t: [] for t in wanted}
        for doc in generate_corpus(n, seed):
            by_topic[doc.labels["topic"]].append(doc)
        if all(len(by_topic[t]) >= k for t, k in wanted.items()):
            return by_topic
        n *= 2
