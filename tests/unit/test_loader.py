"""The shuffling loader: every row once per epoch, seeded order, mixing across shards, exact resume."""

import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest

from cortexlens.data.corpus import generate_corpus
from cortexlens.errors import StoreError
from cortexlens.models.hooks import HookPoint
from cortexlens.store import catalog, layout
from cortexlens.store.loader import ShufflingLoader
from cortexlens.store.reader import iter_activations
from tests.helpers import load_local, run_extraction

POINTS = [HookPoint("resid_post", 1), HookPoint("mlp_post", 2)]
B, BUFFER = 32, 256  # ~11 fills of the buffer per epoch


@pytest.fixture(scope="module")
def store(tmp_path_factory, tiny_model):
    root = tmp_path_factory.mktemp("store")
    model = load_local(tiny_model("gpt2"), name="tiny")
    manifest = run_extraction(model, root, generate_corpus(60, 3), hooks=["resid_post", "mlp_post"], layers=[1, 2],
                              batch_size=3, sort_window=1, shard_rows=40, row_group_rows=16)
    assert len(manifest["shards"]) >= 8
    return root


@pytest.fixture(scope="module")
def reference(store):
    """Rows in store order, keyed doc_id * 1000 + pos."""
    batches = list(iter_activations(store, "tiny", "corpus", POINTS))
    keys = np.concatenate([b.doc_id * 1000 + b.pos for b in batches])
    return keys, {p: np.concatenate([b[p] for b in batches]) for p in POINTS}


def loader(store, **kw) -> ShufflingLoader:
    return ShufflingLoader(store, "tiny", "corpus", POINTS, **{"batch_rows": B, "buffer_rows": BUFFER, "seed": 0, **kw})


def keys_of(batches) -> np.ndarray:
    return np.concatenate([b.doc_id * 1000 + b.pos for b in batches])


def same(a, b) -> bool:
    return len(a) == len(b) and all(
        np.array_equal(x.doc_id, y.doc_id) and np.array_equal(x.pos, y.pos)
        and all(np.array_equal(x[p].view(np.uint32), y[p].view(np.uint32)) for p in POINTS) for x, y in zip(a, b))


def test_every_row_exactly_once_with_its_vectors(store, reference):
    ref_keys, ref_acts = reference
    shuffled = loader(store)
    batches = list(shuffled.epoch(0))
    assert shuffled.rows == len(ref_keys) == catalog.extraction(store, "tiny", "corpus").rows("activations", POINTS[0])
    assert len(batches) == len(shuffled) == -(-len(ref_keys) // B)
    assert [len(b) for b in batches[:-1]] == [B] * (len(batches) - 1) and 0 < len(batches[-1]) <= B
    keys = keys_of(batches)
    assert np.array_equal(np.sort(keys), np.sort(ref_keys)) and len(np.unique(keys)) == len(keys)
    assert not np.array_equal(keys, ref_keys)
    where = np.searchsorted(ref_keys, keys)  # ref_keys are sorted: store order is (doc_id, pos)
    for p in POINTS:  # each row's vectors travel with its key, bit for bit
        got = np.concatenate([b[p] for b in batches])
        assert got.dtype == np.float32 and np.array_equal(got.view(np.uint32), ref_acts[p][where].view(np.uint32))


def test_same_seed_same_order_other_seed_or_epoch_another(store):
    first = list(loader(store).epoch(0))
    assert same(first, list(loader(store).epoch(0)))  # a fresh loader: nothing cached decides the order
    for other in (list(loader(store, seed=1).epoch(0)), list(loader(store).epoch(1))):
        assert not np.array_equal(keys_of(first), keys_of(other))
        assert np.array_equal(np.sort(keys_of(first)), np.sort(keys_of(other)))


def test_first_batch_draws_from_at_least_four_shards(store):
    shards = catalog.extraction(store, "tiny", "corpus").manifest["shards"]
    doc_end = np.array([s["doc_end"] for s in shards])
    for seed in range(3):
        first = next(loader(store, seed=seed).epoch(0))
        assert len(np.unique(np.searchsorted(doc_end, first.doc_id, side="right"))) >= 4


def test_reading_order_deals_row_groups_round_robin_across_shards(store):
    shuffled = loader(store)
    order = shuffled.order(np.random.default_rng(0))
    shards = [shuffled.units[i].shard for i in order]
    n = len(set(shards))
    assert sorted(order) == list(range(len(shuffled.units)))  # every row group once
    assert sorted(shards[:n]) == list(range(n))  # one of every shard before any shard's second
    assert shards[:n] != sorted(shards[:n]) and n >= 8


def test_start_batch_resumes_exactly(store):
    shuffled = loader(store, seed=7)
    full = list(shuffled.epoch(3))
    for k in (1, 4, 5, 12, len(full) - 1, len(full)):  # within the first fill, at fill boundaries, the last
        assert same(list(shuffled.epoch(3, start_batch=k)), full[k:]), k


def test_docs_filter_keeps_only_those_rows(store, reference):
    ref_keys, _ = reference
    docs = np.arange(0, 60, 3)
    shuffled = loader(store, docs=docs)
    keys = keys_of(list(shuffled.epoch(0)))
    expected = ref_keys[np.isin(ref_keys // 1000, docs)]
    assert shuffled.rows == len(expected) and np.array_equal(np.sort(keys), expected)


def test_buffer_must_hold_two_batches(store):
    with pytest.raises(ValueError, match="buffer_rows >= 2 \\* batch_rows"):
        ShufflingLoader(store, "tiny", "corpus", POINTS, batch_rows=64, buffer_rows=100)


def test_row_groups_that_differ_between_points_are_refused(store, tmp_path):
    copy = tmp_path / "store"
    shutil.copytree(layout.extraction_dir(store, "tiny", "corpus"), layout.extraction_dir(copy, "tiny", "corpus"))
    path = catalog.extraction(copy, "tiny", "corpus").files("activations", POINTS[1])[2].path
    pq.write_table(pq.read_table(path), path, row_group_size=5)
    with pytest.raises(StoreError) as err:
        ShufflingLoader(copy, "tiny", "corpus", POINTS)
    assert err.value.lines[0].startswith(f"store: row groups of {path} differ from those of ")
