"""The numpy reader and the catalog: bitwise parity with the SQL views, for every hook point."""

import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from cortexlens.data.corpus import generate_corpus
from cortexlens.errors import StoreError
from cortexlens.models.hooks import HookPoint
from cortexlens.store import catalog, layout
from cortexlens.store.atomic import checksum_file
from cortexlens.store.reader import iter_activations, iter_pairs, read_pooled
from cortexlens.store.sql import connect
from tests.helpers import load_local, run_extraction

HOOKS = ["resid_pre", "attn_z", "attn_out", "mlp_in", "mlp_pre", "mlp_post", "mlp_out", "resid_post"]
MODULES = {"gpt2": "module:transformer.h.1.mlp", "bert": "module:encoder.layer.1.output"}
# several shards, several row groups each
SMALL = {"batch_size": 4, "sort_window": 2, "shard_rows": 60, "row_group_rows": 16}
EXTRACTIONS = [("tiny-gpt2", "corpus"), ("tiny-bert", "corpus"), ("tiny-gpt2", "half")]


@pytest.fixture(scope="module")
def store(tmp_path_factory, tiny_model):
    """Two models with every canonical hook and a module hook, and a float16 extraction, in one store."""
    root = tmp_path_factory.mktemp("store")
    docs = generate_corpus(40, 0)
    for family in ("gpt2", "bert"):
        model = load_local(tiny_model(family), name=f"tiny-{family}")
        manifest = run_extraction(model, root, docs, hooks=[*HOOKS, MODULES[family]], layers="all", **SMALL)
        assert len(manifest["shards"]) >= 4
    model = load_local(tiny_model("gpt2"), name="tiny-gpt2")
    run_extraction(model, root, docs, dataset="half", hooks=["resid_post", "mlp_post"], layers=[1, 2],
                   store_dtype="float16", pooling=["mean", "first", "last"], **SMALL)
    return root


@pytest.fixture(scope="module")
def con(store):
    return connect(store)


def _sql_where(model: str, dataset: str, point: HookPoint) -> str:
    hook = point.hook.replace("'", "''")
    return f"model = '{model}' and dataset = '{dataset}' and hook = '{hook}' and layer = {point.layer}"


def _vectors(column, width: int) -> np.ndarray:
    """A DuckDB FLOAT[] column (Arrow list) -> [rows, width] float32, through Arrow buffers."""
    return column.combine_chunks().flatten().to_numpy().reshape(-1, width)


def sql_tokens(con, model, dataset, point, width, where="true"):
    """(doc_id, pos, X) of one hook point via SQL, sorted by (doc_id, pos)."""
    table = con.sql(f"select doc_id, pos, act from activations where {_sql_where(model, dataset, point)} "
                    f"and {where}").to_arrow_table()
    doc, pos = table.column("doc_id").to_numpy(), table.column("pos").to_numpy()
    order = np.lexsort((pos, doc))
    return doc[order], pos[order], _vectors(table.column("act"), width)[order]


def sql_pooled(con, model, dataset, point, pooling, width):
    table = con.sql(f"select doc_id, n_tokens, act from pooled where {_sql_where(model, dataset, point)} "
                    f"and pooling = '{pooling}' order by doc_id").to_arrow_table()
    return table.column("doc_id").to_numpy(), table.column("n_tokens").to_numpy(), _vectors(table.column("act"), width)


def read_all(store, model, dataset, points, **kw):
    """Concatenated batches: doc_id, pos, {point: X}."""
    batches = list(iter_activations(store, model, dataset, points, **kw))
    doc = np.concatenate([b.doc_id for b in batches]) if batches else np.empty(0, np.int64)
    pos = np.concatenate([b.pos for b in batches]) if batches else np.empty(0, np.int32)
    acts = {p: np.concatenate([b.acts[p] for b in batches]) for p in (batches[0].acts if batches else {})}
    return doc, pos, acts, batches


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype == np.float32 and a.shape == b.shape and np.array_equal(a.view(np.uint32),
                                                                                     b.view(np.uint32))


@pytest.mark.parametrize("model,dataset", EXTRACTIONS)
def test_every_hook_point_matches_sql_bitwise(store, con, model, dataset):
    ext = catalog.extraction(store, model, dataset)
    assert len(ext.hooks()) == (len(HOOKS) * 3 + 1 if dataset == "corpus" else 4)
    for info in ext.hooks():
        doc, pos, acts, batches = read_all(store, model, dataset, info.point, batch_rows=7)
        assert all(0 < len(b) <= 7 for b in batches)
        sql_doc, sql_pos, sql_X = sql_tokens(con, model, dataset, info.point, info.width)
        assert np.array_equal(doc, sql_doc) and np.array_equal(pos, sql_pos), info.name  # store order = (doc, pos)
        assert doc.dtype == np.int64 and pos.dtype == np.int32
        assert same_bits(acts[info.point], sql_X), info.name
        assert len(doc) == ext.rows("activations", info.point) > 0


@pytest.mark.parametrize("model,dataset", EXTRACTIONS)
def test_pooled_features_match_sql_bitwise(store, con, model, dataset):
    ext = catalog.extraction(store, model, dataset)
    labels = con.sql(f"select doc_id, labels from documents where model = '{model}' and dataset = '{dataset}' "
                     "order by doc_id").to_arrow_table()
    sql_labels = [dict(x) for x in labels.column("labels").to_pylist()]
    assert any(sql_labels)
    for info in ext.hooks():
        for pooling in ext.poolings():
            got = read_pooled(store, model, dataset, info.hook, info.layer, pooling)
            doc, n_tokens, X = sql_pooled(con, model, dataset, info.point, pooling, info.width)
            assert np.array_equal(got.doc_ids, doc) and got.doc_ids.dtype == np.int64
            assert np.array_equal(got.n_tokens, n_tokens) and got.n_tokens.dtype == np.int32
            assert same_bits(got.X, X), (info.name, pooling)
            assert np.array_equal(labels.column("doc_id").to_numpy(), got.doc_ids) and got.labels == sql_labels


def test_float16_store_is_upcast_to_float32(store):
    half = read_pooled(store, "tiny-gpt2", "half", HookPoint("resid_post", 2), pooling="first")
    full = read_pooled(store, "tiny-gpt2", "corpus", HookPoint("resid_post", 2), pooling="last")
    assert half.X.dtype == np.float32 and half.X.shape[1] == full.X.shape[1]
    assert np.array_equal(half.X, half.X.astype(np.float16).astype(np.float32))  # float16 values
    _, _, acts, _ = read_all(store, "tiny-gpt2", "half", ("resid_post", 2))
    _, _, acts32, _ = read_all(store, "tiny-gpt2", "corpus", ("resid_post", 2))
    assert np.allclose(acts[HookPoint("resid_post", 2)], acts32[HookPoint("resid_post", 2)], rtol=1e-3, atol=1e-3)


def test_paired_read_equals_single_reads(store):
    a, b, c = HookPoint("resid_pre", 0), HookPoint("attn_z", 2), HookPoint("module:transformer.h.1.mlp", 1)
    doc, pos, acts, batches = read_all(store, "tiny-gpt2", "corpus", [a, ("attn_z", 2), c], batch_rows=50)
    assert list(batches[0].acts) == [a, b, c] and batches[0][("attn_z", 2)] is batches[0][b]
    for point in (a, b, c):
        d1, p1, single, _ = read_all(store, "tiny-gpt2", "corpus", point, batch_rows=50)
        assert np.array_equal(d1, doc) and np.array_equal(p1, pos) and same_bits(single[point], acts[point])
    pairs = list(iter_pairs(store, "tiny-gpt2", "corpus", a, "blocks.2.attn.hook_z", batch_rows=50))
    assert same_bits(np.concatenate([x for _, _, x, _ in pairs]), acts[a])
    assert same_bits(np.concatenate([y for _, _, _, y in pairs]), acts[b])
    assert np.array_equal(np.concatenate([d for d, _, _, _ in pairs]), doc)


def test_docs_filter_equals_sql_where_in(store, con):
    point = HookPoint("mlp_post", 1)
    keep = [3, 4, 5, 17, 31, 39, 1000]  # 1000 is no document: it selects nothing
    doc, pos, acts, batches = read_all(store, "tiny-bert", "corpus", point, docs=np.array(keep), batch_rows=9)
    assert all(len(b) <= 9 for b in batches)
    where = f"doc_id in ({', '.join(map(str, keep))})"
    width = catalog.extraction(store, "tiny-bert", "corpus").width(point)
    sql_doc, sql_pos, sql_X = sql_tokens(con, "tiny-bert", "corpus", point, width, where)
    assert set(doc) == set(keep) - {1000}
    assert np.array_equal(doc, sql_doc) and np.array_equal(pos, sql_pos) and same_bits(acts[point], sql_X)
    assert read_all(store, "tiny-bert", "corpus", point, docs=[])[0].size == 0


def test_batches_are_writable_views_torch_can_share(store):
    batch = next(iter_activations(store, "tiny-gpt2", "corpus", ("resid_post", 1), batch_rows=5))
    X = batch[("resid_post", 1)]
    assert X.dtype == np.float32 and X.shape == (5, 32) and not X.flags.owndata and X.flags.writeable
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a read-only array would warn here
        tensor = torch.from_numpy(X)
    assert tensor.data_ptr() == X.ctypes.data


def test_catalog_paths_are_absolute_for_a_relative_store(store, monkeypatch):
    monkeypatch.chdir(store.parent)
    ext = catalog.extraction(Path(store.name), "tiny-gpt2", "half")
    assert ext.directory == layout.extraction_dir(store, "tiny-gpt2", "half")
    assert all(f.path.is_absolute() and f.path.is_file() for f in ext.files("activations"))


def test_catalog_rows_and_widths_equal_sql_counts(store, con):
    assert [(e.model, e.dataset) for e in catalog.extractions(store)] == sorted(EXTRACTIONS)
    for ext in catalog.extractions(store):
        where = f"model = '{ext.model}' and dataset = '{ext.dataset}'"
        for table in ("documents", "tokens", "activations", "pooled"):
            assert ext.rows(table) == con.execute(f"select count(*) from {table} where {where}").fetchone()[0]
        counts = {(h, layer): (n, w) for h, layer, n, w in con.execute(
            f"select hook, layer, count(*), max(len(act)) from activations where {where} group by all").fetchall()}
        assert counts == {(i.hook, i.layer): (ext.rows("activations", i.point), i.width) for i in ext.hooks()}
        pooled = {(h, layer): n for h, layer, n in con.execute(
            f"select hook, layer, count(*) from pooled where {where} group by all").fetchall()}
        assert pooled == {(i.hook, i.layer): ext.rows("pooled", i.hook, i.layer) for i in ext.hooks()}
        files = ext.files("activations", ext.hooks()[0].point)
        assert [f.shard for f in files] == list(range(len(ext.manifest["shards"])))
        assert all(f.path.is_absolute() and checksum_file(f.path) == f.checksum for f in files)
    assert len(catalog.table_files(store, "tokens")) == sum(len(e.manifest["shards"]) for e in catalog.extractions(store))


def test_unfinished_extraction_is_invisible_to_catalog_and_sql(tiny_model, tmp_path):
    model = load_local(tiny_model("gpt2"), name="tiny")
    for dataset in ("done", "killed"):
        run_extraction(model, tmp_path, generate_corpus(8, 1), dataset=dataset, hooks=["resid_post"], layers=[0])
    (layout.extraction_dir(tmp_path, "tiny", "killed") / layout.MANIFEST).unlink()
    assert [e.dataset for e in catalog.extractions(tmp_path)] == ["done"]
    assert connect(tmp_path).execute("select distinct dataset from activations").fetchall() == [("done",)]
    assert all("dataset=done" in str(p) for p in catalog.table_files(tmp_path, "activations"))
    with pytest.raises(StoreError) as err:
        next(iter_activations(tmp_path, "tiny", "killed", ("resid_post", 0)))
    assert err.value.lines == [(f"store: no complete extraction of model 'tiny' dataset 'killed' in {tmp_path} "
                               "(complete: tiny/done)")]


def _error(fn, *args, **kw) -> str:
    with pytest.raises(StoreError) as err:
        fn(*args, **kw)
    assert len(err.value.lines) == 1 and "\n" not in err.value.lines[0]
    return err.value.lines[0]


def test_error_lines_name_what_is_missing_and_what_exists(store):
    complete = "tiny-bert/corpus, tiny-gpt2/corpus, tiny-gpt2/half"
    assert _error(catalog.extraction, store, "gpt2", "corpus") == (
        f"store: no complete extraction of model 'gpt2' dataset 'corpus' in {store} (complete: {complete})")
    assert _error(read_pooled, store, "tiny-bert", "wiki", "resid_post", 0).startswith(
        "store: no complete extraction of model 'tiny-bert' dataset 'wiki'")
    line = _error(read_pooled, store, "tiny-gpt2", "half", HookPoint("resid_post", 0))
    assert line == (f"store: no hook point blocks.0.hook_resid_post in extraction tiny-gpt2/half of {store} "
                    "(stored: blocks.1.hook_resid_post, blocks.2.hook_resid_post, blocks.1.mlp.hook_post, "
                    "blocks.2.mlp.hook_post)")
    assert "no hook point resid_pots layer 1 in extraction tiny-gpt2/half" in _error(
        lambda: list(iter_activations(store, "tiny-gpt2", "half", [("resid_pots", 1)])))
    assert _error(read_pooled, store, "tiny-gpt2", "half", "mlp_post", 1, "max") == (
        "store: no pooling 'max' of blocks.1.mlp.hook_post in extraction tiny-gpt2/half (stored: mean, first, last)")


def test_points_whose_rows_disagree_are_refused(store, tmp_path):
    copy = tmp_path / "store"
    shutil.copytree(layout.extraction_dir(store, "tiny-gpt2", "half"), layout.extraction_dir(copy, "tiny-gpt2", "half"))
    ext = catalog.extraction(copy, "tiny-gpt2", "half")
    path = ext.files("activations", ("mlp_post", 2))[1].path
    table = pq.read_table(path)
    sizes = [pq.ParquetFile(path).metadata.row_group(i).num_rows for i in range(pq.ParquetFile(path).num_row_groups)]
    reordered = table.take(np.r_[1:sizes[0], 0, sizes[0]:table.num_rows])  # same row groups, rows swapped
    starts = np.cumsum([0, *sizes[:-1]])
    with pq.ParquetWriter(path, table.schema) as writer:
        for start, size in zip(starts, sizes):
            writer.write_table(reordered.slice(int(start), size))  # one row group each, as before
    assert list(iter_activations(copy, "tiny-gpt2", "half", ("mlp_post", 2)))  # alone it reads fine
    line = _error(lambda: list(iter_activations(copy, "tiny-gpt2", "half", [("mlp_post", 1), ("mlp_post", 2)])))
    assert line == f"store: rows of {path} (row group 0) are not the tokens of " \
                   f"{ext.files('activations', ('mlp_post', 1))[1].path}; the points' files do not line up"
    wide, narrow = ext.files("activations", ("mlp_post", 1))[0].path, ext.files("activations", ("resid_post", 1))[0]
    shutil.copyfile(wide, narrow.path)  # a file that is not the one the manifest lists
    assert _error(lambda: next(iter_activations(copy, "tiny-gpt2", "half", ("resid_post", 1)))) == (
        f"store: {narrow.path} holds {narrow.rows} rows of fixed_size_list<element: halffloat>[128], its manifest "
        f"says {narrow.rows} rows of width 32")


DEMO_STUDY = "CORTEXLENS_STUDY"


def _demo_store() -> Path:
    study = os.environ.get(DEMO_STUDY)
    if not study:
        pytest.skip(f"set {DEMO_STUDY}=<directory of params.yaml> after make demo")
    from cortexlens.config import load_study

    loaded = load_study(Path(study) / "params.yaml")
    extract = loaded.params.extract
    wanted = {(m, d) for m in extract.models for d in extract.datasets_of(m)}
    found = {(e.model, e.dataset) for e in catalog.extractions(loaded.store_dir)}
    if not wanted <= found:
        pytest.skip(f"{loaded.store_dir} lacks complete extractions {sorted(wanted - found)} of the study")
    return loaded.store_dir


def test_demo_store_every_hook_point_matches_sql_bitwise():
    """The study `make demo` built: every hook point of every extraction, tokens and pooled, vs SQL."""
    store = _demo_store()
    con = connect(store)
    for ext in catalog.extractions(store):
        for info in ext.hooks():
            doc, pos, acts, _ = read_all(store, ext.model, ext.dataset, info.point)
            sql_doc, sql_pos, sql_X = sql_tokens(con, ext.model, ext.dataset, info.point, info.width)
            assert np.array_equal(doc, sql_doc) and np.array_equal(pos, sql_pos), (ext.label, info.name)
            assert same_bits(acts[info.point], sql_X), (ext.label, info.name)
            for pooling in {"mean", "last"} & set(ext.poolings()):
                got = read_pooled(store, ext.model, ext.dataset, info.point, pooling=pooling)
                p_doc, p_n, p_X = sql_pooled(con, ext.model, ext.dataset, info.point, pooling, info.width)
                assert np.array_equal(got.doc_ids, p_doc) and np.array_equal(got.n_tokens, p_n)
                assert same_bits(got.X, p_X), (ext.label, info.name, pooling)
