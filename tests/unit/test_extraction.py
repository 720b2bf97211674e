"""The extraction engine: padding-invariant, pad-free, resumable, and equal to direct hook reads."""

import json

import numpy as np
import pytest

from cortexlens.data.corpus import generate_corpus
from cortexlens.extraction import batches
from cortexlens.models.hooks import HookPoint
from cortexlens.store import layout
from cortexlens.store.sql import connect
from tests.helpers import activations, load_local, run_extraction

HOOKS = ["resid_pre", "resid_post", "attn_out", "attn_z", "mlp_post"]


@pytest.mark.parametrize("family", ["gpt2", "gpt_neox", "llama", "gemma", "bert"])
def test_left_and_right_padding_store_identical_activations(family, tiny_model, tmp_path):
    model = load_local(tiny_model(family))
    docs = generate_corpus(24, 1)  # varied lengths, so every batch pads
    for side in ("left", "right"):
        run_extraction(model, tmp_path / side, docs, hooks=HOOKS, padding_side=side, batch_size=8)
    left, right = activations(tmp_path / "left"), activations(tmp_path / "right")
    assert left.keys() == right.keys() and len(left) > 0
    worst = max(float(np.abs(left[k] - right[k]).max()) for k in left)
    assert worst <= 1e-5


def test_padding_control_position_ids_matter(tiny_model, monkeypatch):
    """Control: without position ids from the mask, left padding does change GPT-2's activations,
    so the invariance test above can fail."""
    model = load_local(tiny_model("gpt2"))
    docs = generate_corpus(8, 1)
    point = HookPoint("resid_post", 0)
    out = {}
    for side in ("left", "right"):
        batch = batches.tokenize_batch(docs, model.tokenizer, 64, side, model.device, position_ids=False)
        out[side] = model.run_with_cache(batch.inputs, [point])[point][batch.mask]
    assert float((out["left"] - out["right"]).abs().max()) > 1e-3


def test_pad_tokens_are_never_stored(tiny_model, tmp_path):
    model = load_local(tiny_model("bert"))
    docs = generate_corpus(30, 2)
    manifest = run_extraction(model, tmp_path, docs, hooks=["resid_post"], layers=[0], batch_size=7)
    lengths = [len(model.tokenizer(d.text)["input_ids"]) for d in docs]
    con = connect(tmp_path)
    assert con.execute("select count(*) from tokens").fetchone()[0] == sum(lengths)
    assert con.execute("select count(*) from activations").fetchone()[0] == sum(lengths)
    assert con.execute(f"select count(*) from tokens where token_id = {model.tokenizer.pad_token_id}").fetchone()[0] == 0
    per_doc = dict(con.execute("select doc_id, max(pos) + 1 from tokens group by doc_id").fetchall())
    assert per_doc == {d.doc_id: n for d, n in zip(docs, lengths)}
    assert manifest["rows"]["tokens"] == sum(lengths)


def test_stored_activations_equal_direct_hook_reads(tiny_model, tmp_path):
    model = load_local(tiny_model("llama"))
    docs = generate_corpus(5, 3)
    run_extraction(model, tmp_path, docs, hooks=["attn_z", "mlp_post"], layers=[1])
    stored = activations(tmp_path)
    for doc in docs:
        enc = model.tokenizer(doc.text, return_tensors="pt")
        cache = model.run_with_cache(dict(enc), [HookPoint("attn_z", 1), HookPoint("mlp_post", 1)])
        for pos in range(enc["input_ids"].shape[1]):
            z = cache[HookPoint("attn_z", 1)][0, pos].flatten().numpy()  # heads flattened head-major
            np.testing.assert_allclose(stored[("attn_z", 1, doc.doc_id, pos)], z, atol=1e-5)
            mlp = cache[HookPoint("mlp_post", 1)][0, pos].numpy()
            np.testing.assert_allclose(stored[("mlp_post", 1, doc.doc_id, pos)], mlp, atol=1e-5)


def test_pooled_features_are_mean_first_and_last_token(tiny_model, tmp_path):
    model = load_local(tiny_model("gpt2"))
    run_extraction(model, tmp_path, generate_corpus(10, 4), hooks=["resid_post"], layers=[2],
                   pooling=["mean", "first", "last"], padding_side="left", batch_size=4)
    tokens = activations(tmp_path)
    con = connect(tmp_path)
    pooled = {(d, p): np.asarray(a) for d, p, a in con.execute("select doc_id, pooling, act from pooled").fetchall()}
    for doc_id in range(10):
        rows = np.stack([v for (h, l, d, p), v in sorted(tokens.items()) if d == doc_id])  # [pos, d]
        np.testing.assert_allclose(pooled[(doc_id, "mean")], rows.mean(0), atol=1e-5)
        np.testing.assert_allclose(pooled[(doc_id, "first")], rows[0], atol=1e-6)
        np.testing.assert_allclose(pooled[(doc_id, "last")], rows[-1], atol=1e-6)


def test_shards_close_at_window_boundaries_and_row_counts_add_up(tiny_model, tmp_path):
    model = load_local(tiny_model("gpt2"))
    manifest = run_extraction(model, tmp_path, generate_corpus(50, 5), hooks=["resid_post"], layers=[0, 1],
                              batch_size=5, sort_window=2, shard_rows=60, row_group_rows=16)
    shards = manifest["shards"]
    assert len(shards) > 3
    assert [s["doc_start"] for s in shards] == [0] + [s["doc_end"] for s in shards[:-1]]
    assert all(s["doc_start"] % 10 == 0 for s in shards) and shards[-1]["doc_end"] == 50
    assert all(s["rows"] >= 60 for s in shards[:-1])
    for s in shards:
        assert {rec["rows"] for rel, rec in s["files"].items() if rel.startswith("activations/")} == {s["rows"]}
    assert manifest["rows"]["activations"] == 2 * manifest["rows"]["tokens"]
    assert not (layout.extraction_dir(tmp_path, "m", "corpus") / layout.PROGRESS).exists()


def test_interrupted_run_resumes_with_identical_files(tiny_model, tmp_path, monkeypatch):
    model = load_local(tiny_model("gpt2"))
    docs = generate_corpus(60, 6)
    settings = {"hooks": ["resid_post", "mlp_post"], "layers": "all", "batch_size": 6, "sort_window": 2,
                "shard_rows": 80}
    clean = run_extraction(model, tmp_path / "clean", docs, **settings)

    from cortexlens.extraction import writers
    calls = {"n": 0}
    original = writers.ShardWriter.add

    def crash_on_ninth_batch(self, batch, cache, slots=None):
        calls["n"] += 1
        if calls["n"] == 9:
            raise KeyboardInterrupt  # as if the user pressed Ctrl-C mid-shard
        return original(self, batch, cache, slots)

    monkeypatch.setattr(writers.ShardWriter, "add", crash_on_ninth_batch)
    with pytest.raises(KeyboardInterrupt):
        run_extraction(model, tmp_path / "resumed", docs, **settings)
    out = layout.extraction_dir(tmp_path / "resumed", "m", "corpus")
    assert not (out / layout.MANIFEST).exists()
    assert connect(tmp_path / "resumed").execute("select count(*) from activations").fetchone()[0] == 0
    done_before = len(list((out / layout.PROGRESS).glob("shard-*.json")))
    assert done_before >= 1
    monkeypatch.setattr(writers.ShardWriter, "add", original)
    resumed = run_extraction(model, tmp_path / "resumed", docs, **settings)
    assert [s["files"] for s in resumed["shards"]] == [s["files"] for s in clean["shards"]]
    assert resumed["rows"] == clean["rows"]
    assert not list(out.rglob("*.tmp"))


def test_complete_run_is_skipped_and_changed_settings_redo(tiny_model, tmp_path):
    model = load_local(tiny_model("gpt2"))
    docs = generate_corpus(12, 7)
    first = run_extraction(model, tmp_path, docs, hooks=["resid_post"], layers=[0])
    manifest_path = layout.extraction_dir(tmp_path, "m", "corpus") / layout.MANIFEST
    stamp = manifest_path.stat().st_mtime_ns
    again = run_extraction(model, tmp_path, docs, hooks=["resid_post"], layers=[0])
    assert again == first and manifest_path.stat().st_mtime_ns == stamp
    changed = run_extraction(model, tmp_path, docs, hooks=["resid_post"], layers=[1])
    assert changed["fingerprint"] != first["fingerprint"]
    con = connect(tmp_path)
    assert con.execute("select distinct layer from activations").fetchall() == [(1,)]


def test_float16_storage_halves_size_and_reads_back_as_floats(tiny_model, tmp_path):
    model = load_local(tiny_model("gpt2"))
    docs = generate_corpus(30, 8)
    run_extraction(model, tmp_path / "f32", docs, hooks=["resid_post"], layers=[1])
    run_extraction(model, tmp_path / "f16", docs, hooks=["resid_post"], layers=[1], store_dtype="float16")
    size = {k: sum(p.stat().st_size for p in (tmp_path / k).rglob("activations/**/*.parquet")) for k in ("f32", "f16")}
    assert size["f16"] < 0.65 * size["f32"]
    a32, a16 = activations(tmp_path / "f32"), activations(tmp_path / "f16")
    worst = max(float(np.abs(a32[k] - a16[k]).max() / (np.abs(a32[k]).max() + 1e-6)) for k in a32)
    assert worst < 1e-3


def test_truncation_is_counted(tiny_model, tmp_path):
    model = load_local(tiny_model("gpt2"))
    docs = generate_corpus(20, 9)
    manifest = run_extraction(model, tmp_path, docs, hooks=["resid_post"], layers=[0], max_length=8)
    lengths = [len(model.tokenizer(d.text)["input_ids"]) for d in docs]
    assert manifest["n_truncated"] == sum(n > 8 for n in lengths) > 0
    assert connect(tmp_path).execute("select max(pos) from tokens").fetchone()[0] == 7


def test_manifest_records_provenance(tiny_model, tmp_path):
    model = load_local(tiny_model("bert"))
    manifest = run_extraction(model, tmp_path, generate_corpus(9, 0), hooks=["attn_z"], layers=[0])
    assert manifest["hooks"] == [{"hook": "attn_z", "layer": 0, "name": "blocks.0.attn.hook_z", "width": 32}]
    assert manifest["tokenizer"]["padding_side"] == "right"
    assert manifest["model"]["family"] == "bert"
    files = [f for s in manifest["shards"] for f in s["files"]]
    out = layout.extraction_dir(tmp_path, "m", "corpus")
    from cortexlens.store.atomic import checksum_file
    for shard in manifest["shards"]:
        for rel, rec in shard["files"].items():
            assert checksum_file(out / rel) == rec["xxh3_128"]
    assert json.loads((out / layout.MANIFEST).read_text()) == manifest
    assert any(f.startswith("documents/") for f in files)


@pytest.mark.parametrize("family", ["gpt2", "bert"])
def test_stored_embeddings_equal_the_model_run_on_the_text_alone(family, tiny_model, tmp_path):
    """Segment ids of a single text are all zeros: BERT assumes them anyway, and GPT-2 must not get
    them (it would add wte(0) to every position; the tiny GPT-2 uses a BERT tokenizer that emits them)."""
    import torch

    model = load_local(tiny_model(family))
    docs = generate_corpus(3, 0)
    run_extraction(model, tmp_path, docs, hooks=["resid_pre"], layers=[0])
    stored = activations(tmp_path)
    for doc in docs:
        ids = model.tokenizer(doc.text, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            hidden = model.model(input_ids=ids, output_hidden_states=True).hidden_states[0][0]  # [pos, d]
        got = np.stack([stored[("resid_pre", 0, doc.doc_id, p)] for p in range(ids.shape[1])])
        np.testing.assert_allclose(got, hidden.numpy(), atol=1e-5, rtol=0)


def test_length_batching_pads_less_and_stores_rows_in_corpus_order(tiny_model, tmp_path, monkeypatch):
    """Within a window, batches are cut from the documents sorted by length; the store holds the same
    rows, in the same (doc_id, pos) order, as batching in corpus order."""
    model = load_local(tiny_model("gpt2"))
    docs = generate_corpus(48, 8)
    padded = {}
    original = batches.tokenize_batch

    def counting(docs, *args, **kwargs):
        batch = original(docs, *args, **kwargs)
        padded[key] = padded.get(key, 0) + batch.mask.numel()
        return batch

    from cortexlens.extraction import runner
    monkeypatch.setattr(runner, "tokenize_batch", counting)
    stored = {}
    for key, window in (("corpus", 1), ("length", 4)):
        run_extraction(model, tmp_path / key, docs, hooks=["resid_post", "mlp_post"], layers=[1], batch_size=4,
                       sort_window=window, pooling=["mean", "last"])
        stored[key] = connect(tmp_path / key)
    assert padded["length"] < 0.9 * padded["corpus"]  # the corpus's lengths vary; sorted batches pad less
    for table, key_cols, value in (("activations", "hook, doc_id, pos", "act"), ("pooled", "doc_id, pooling", "act"),
                                   ("tokens", "doc_id, pos", "token_id"), ("documents", "doc_id", "n_tokens")):
        a, b = (con.execute(f"select {key_cols}, {value} from {table}").fetchall() for con in stored.values())
        assert [r[:-1] for r in a] == [r[:-1] for r in b]  # same rows in the same file order
        if value == "act":
            np.testing.assert_allclose(np.concatenate([r[-1] for r in a]), np.concatenate([r[-1] for r in b]),
                                       atol=1e-5)
        else:
            assert a == b
    order = stored["length"].execute("select doc_id, pos from tokens").fetchall()
    assert order == sorted(order)


def test_parallel_encoding_writes_the_same_bytes(tiny_model, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from cortexlens.extraction.writers import ShardWriter, TokenDecoder

    model = load_local(tiny_model("gpt2"))
    points = [HookPoint("resid_post", 0), HookPoint("mlp_post", 1)]
    docs = generate_corpus(24, 9)
    encoded = [batches.tokenize_batch(docs[i:i + 8], model.tokenizer, 32, "right", model.device, position_ids=True)
               for i in (0, 8, 16)]
    records = {}
    with ThreadPoolExecutor(2) as pool:
        for name, executor in (("serial", None), ("pool", pool)):
            writer = ShardWriter(tmp_path / name, 0, "float32", "zstd", 16, ["mean"],
                                 TokenDecoder(model.tokenizer), pool=executor)
            for batch in encoded:
                writer.add(batch, model.run_with_cache(batch.inputs, points), slots=None)
                writer.flush_window()
            records[name] = writer.close()
    assert records["serial"] == records["pool"] and len(records["pool"]) == 2 + 2 * 2
