"""Parity with a reference implementation: MiniLM's pooled features equal sentence-transformers' embeddings.

all-MiniLM-L6-v2 embeds a sentence as the L2-normalised mean of its last layer over real tokens;
the `pooled` table's mean of blocks.5.hook_resid_post must reproduce that exactly.
"""

import numpy as np
import torch

from cortexlens.data.corpus import generate_corpus
from cortexlens.models.loading import ResolvedSource, load_hooked_model, minilm_dir
from cortexlens.store.sql import connect
from tests.helpers import run_extraction


def test_pooled_mean_of_last_layer_equals_sentence_transformers(tmp_path):
    from sentence_transformers import SentenceTransformer

    docs = generate_corpus(40, 11)
    model = load_hooked_model("minilm", ResolvedSource("builtin", str(minilm_dir()), alias="minilm"),
                              torch.device("cpu"))
    run_extraction(model, tmp_path, docs, hooks=["resid_post"], layers=[5], pooling=["mean"],
                   padding_side="left", batch_size=16)
    rows = connect(tmp_path).execute(
        "select doc_id, act from pooled where pooling = 'mean' order by doc_id").fetchall()
    ours = np.array([act for _, act in rows])  # [docs, 384]
    ours /= np.linalg.norm(ours, axis=1, keepdims=True)
    reference = SentenceTransformer(str(minilm_dir()), device="cpu").encode([d.text for d in docs])
    np.testing.assert_allclose(ours, reference, atol=1e-5)
