"""Activations computed again from an extraction's documents equal the stored ones; the documents and
tokens tables read back as SQL shows them."""

import numpy as np

from cortexlens.data.corpus import Document, generate_corpus
from cortexlens.extraction.live import iter_model_activations
from cortexlens.models.hooks import HookPoint
from cortexlens.store.documents import read_documents, read_tokens
from cortexlens.store.reader import iter_activations
from cortexlens.store.sql import connect
from tests.helpers import load_local, run_extraction


def test_computed_activations_equal_stored_ones(tiny_model, tmp_path):
    model = load_local(tiny_model("llama"))
    docs = generate_corpus(20, 2)
    run_extraction(model, tmp_path, docs, hooks=["mlp_post", "resid_post"], layers=[1], batch_size=8,
                   padding_side="left", max_length=12)
    points = [HookPoint("mlp_post", 1), HookPoint("resid_post", 1)]
    stored = list(iter_activations(tmp_path, "m", "corpus", points))
    computed = list(iter_model_activations(model, docs, points, max_length=12, padding_side="left", batch_size=8))
    for point in points:
        np.testing.assert_allclose(np.concatenate([b[point] for b in computed]),
                                   np.concatenate([b[point] for b in stored]), atol=1e-6, rtol=0)
    for field in ("doc_id", "pos"):
        np.testing.assert_array_equal(np.concatenate([getattr(b, field) for b in computed]),
                                      np.concatenate([getattr(b, field) for b in stored]))
    tokens = read_tokens(tmp_path, "m", "corpus")
    token_ids = np.concatenate([b.token_id for b in computed])
    np.testing.assert_array_equal(token_ids, tokens.token_id)
    b = stored[0]
    np.testing.assert_array_equal(tokens.lookup(b.doc_id, b.pos), token_ids[:len(b)])


def test_documents_and_tokens_read_back_as_sql_shows_them(tiny_model, tmp_path):
    model = load_local(tiny_model("gpt2"))
    docs = [Document(i, d.text, d.labels) for i, d in enumerate(generate_corpus(12, 4))]
    run_extraction(model, tmp_path, docs, hooks=["resid_post"], layers=[0], batch_size=4, shard_rows=20)
    con = connect(tmp_path)
    sql_docs = con.execute("select doc_id, text, n_tokens from documents order by doc_id").fetchall()
    ours = read_documents(tmp_path, "m", "corpus")
    assert [(d.doc_id, d.text, d.n_tokens) for d in ours] == sql_docs
    assert ours[3].labels == docs[3].labels
    assert [d.doc_id for d in read_documents(tmp_path, "m", "corpus", limit=5)] == [0, 1, 2, 3, 4]
    sql_tokens = con.execute("select doc_id, pos, token_id from tokens order by doc_id, pos").fetchall()
    tokens = read_tokens(tmp_path, "m", "corpus")
    assert list(zip(tokens.doc_id.tolist(), tokens.pos.tolist(), tokens.token_id.tolist())) == sql_tokens


def test_activation_source_reads_stored_points_and_computes_the_rest(tiny_model, tmp_path):
    from cortexlens.extraction.source import ActivationSource

    model = load_local(tiny_model("gpt2"))
    docs = generate_corpus(10, 5)
    run_extraction(model, tmp_path, docs, hooks=["resid_post"], layers=[0], batch_size=4, max_length=16)
    opened = []

    def dataset_docs():
        opened.append(True)
        return iter(docs)

    source = ActivationSource(tmp_path, model, "corpus", dataset_docs, max_length=16, batch_size=4)
    stored, missing = HookPoint("resid_post", 0), HookPoint("mlp_post", 1)
    assert source.stored(stored) and not source.stored(missing)
    computed = list(source.batches(missing))  # on the extraction's own documents: the dataset is not opened
    assert not opened and sum(len(b) for b in computed) == sum(len(b) for b in source.batches(stored))
    looked_up = np.concatenate([source.token_ids(b) for b in source.batches(stored)])
    np.testing.assert_array_equal(looked_up, np.concatenate([b.token_id for b in computed]))
    elsewhere = ActivationSource(tmp_path, model, "other", dataset_docs, max_length=16, max_docs=3)
    assert [d.doc_id for d in elsewhere.documents()] == [0, 1, 2] and opened  # not extracted: the dataset
