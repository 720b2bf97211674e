"""The `repeats` dataset: texts with a planted repeat, the toy model's task written as words.

Each document is `length` words: a segment of L words drawn uniformly from the built-in corpus's
vocabulary (L uniform in [min_repeat, max_repeat] per document), repeated until the length is reached
(`A A A ...`, the last copy cut). From the second copy on, every next word can be found by looking up
the current word's previous occurrence (induction), except where `first_token_rate` put the first word
instead (the toy's second job). Label `repeat_length` holds L. Seeded: the same
settings give the same texts. Useful to measure a causal model on what it can predict (the toy model's
loss on ordinary sentences, which it never saw, says little).
"""

from __future__ import annotations

import random

from cortexlens.data.corpus import Document, corpus_vocabulary


def generate_repeats(n_docs: int, seed: int, min_repeat: int, max_repeat: int, length: int,
                     first_token_rate: float = 0.0) -> list[Document]:
    """`first_token_rate` > 0 writes the toy's training mixture: after the first copy each word is, with that
    probability, the document's first word (`toy.task.training_batch`). Drawn from a stream of its own, so
    the segments are those of rate 0."""
    vocabulary = sorted(corpus_vocabulary())
    rng = random.Random(seed)
    replace = random.Random(f"first-token:{seed}")
    docs = []
    for doc_id in range(n_docs):
        size = rng.randint(min_repeat, max_repeat)
        segment = [rng.choice(vocabulary) for _ in range(size)]
        words = [segment[i % size] for i in range(length)]
        if first_token_rate > 0:
            words = [segment[0] if i >= size and replace.random() < first_token_rate else w for i, w in enumerate(words)]
        docs.append(Document(doc_id, " ".join(words), {"repeat_length": str(size)}))
    return docs
