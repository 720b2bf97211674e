"""Document sources: the built-in corpus, text/JSONL/Parquet files, and hub datasets offline."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cortexlens.config.schema import BuiltinCorpus, FileDataset, HuggingFaceDataset
from cortexlens.data.corpus import generate_corpus
from cortexlens.data.sources import open_dataset
from cortexlens.errors import DatasetError


def _texts(source):
    return [d.text for d in source]


def test_builtin_corpus_source_is_the_generator(tmp_path):
    source = open_dataset("corpus", BuiltinCorpus(kind="builtin", n_docs=30, seed=3), tmp_path)
    assert len(source) == 30 and _texts(source) == [d.text for d in generate_corpus(30, 3)]
    assert _texts(source) == _texts(source)  # iterable more than once (resume re-iterates)


def test_text_file_one_document_per_non_empty_line(tmp_path):
    (tmp_path / "c.txt").write_text("first line\n\n  \nsecond line\nthird\n")
    source = open_dataset("mine", FileDataset(kind="text", path="c.txt"), tmp_path)
    assert _texts(source) == ["first line", "second line", "third"]
    assert [d.doc_id for d in source] == [0, 1, 2]
    limited = open_dataset("mine", FileDataset(kind="text", path="c.txt", n_docs=2), tmp_path)
    assert len(limited) == 2 and _texts(limited) == ["first line", "second line"]


def test_jsonl_text_field_and_other_fields_as_labels(tmp_path):
    rows = [{"body": "a cat", "label": 1, "split": "x"}, {"body": "a dog", "label": 0, "split": "y"}]
    (tmp_path / "c.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    source = open_dataset("j", FileDataset(kind="jsonl", path="c.jsonl", text_field="body"), tmp_path)
    docs = list(source)
    assert [d.text for d in docs] == ["a cat", "a dog"]
    assert docs[0].labels == {"label": "1", "split": "x"}


def test_jsonl_errors_name_file_and_line(tmp_path):
    (tmp_path / "bad.jsonl").write_text('{"text": "ok"}\n{"text": \n')
    with pytest.raises(DatasetError) as err:
        open_dataset("j", FileDataset(kind="jsonl", path="bad.jsonl"), tmp_path)
    assert err.value.lines[0].startswith("datasets.j.path: bad.jsonl:2: invalid JSON")
    (tmp_path / "nofield.jsonl").write_text('{"text": "ok"}\n{"body": "x"}\n')
    with pytest.raises(DatasetError) as err:
        open_dataset("j", FileDataset(kind="jsonl", path="nofield.jsonl"), tmp_path)
    assert err.value.lines == ["datasets.j.text_field: nofield.jsonl:2 has no string field 'text'"]


def test_parquet_column(tmp_path):
    pq.write_table(pa.table({"sentence": ["one", "two", "three"], "y": [1, 2, 3]}), tmp_path / "c.parquet")
    source = open_dataset("p", FileDataset(kind="parquet", path="c.parquet", text_field="sentence"), tmp_path)
    assert _texts(source) == ["one", "two", "three"] and list(source)[2].labels == {"y": "3"}
    with pytest.raises(DatasetError) as err:
        open_dataset("p", FileDataset(kind="parquet", path="c.parquet"), tmp_path)
    assert err.value.lines == ["datasets.p.text_field: column 'text' not in c.parquet (columns: sentence, y)"]


def test_empty_file_is_an_error(tmp_path):
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(DatasetError) as err:
        open_dataset("e", FileDataset(kind="text", path="empty.txt"), tmp_path)
    assert err.value.lines == ["datasets.e.path: no documents in empty.txt"]


def test_fingerprint_follows_file_content(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("a\nb\n")
    before = open_dataset("t", FileDataset(kind="text", path="c.txt"), tmp_path).fingerprint
    path.write_text("a\nc\n")
    assert open_dataset("t", FileDataset(kind="text", path="c.txt"), tmp_path).fingerprint != before


def test_hub_dataset_unreachable_is_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache: nothing to fall back on
    with pytest.raises(DatasetError) as err:
        open_dataset("wiki", HuggingFaceDataset(kind="huggingface", name="wikitext", config="wikitext-2-raw-v1"),
                     tmp_path)
    assert len(err.value.lines) == 1
    assert err.value.lines[0].startswith("datasets.wiki: cannot load Hugging Face dataset 'wikitext' "
                                         "(hub unreachable or dataset unknown): ")


def test_repeats_writes_the_toy_training_mixture_at_its_rate():
    """first_token_rate: after the first copy each word is the first word with that probability; the
    segments, lengths and labels are those of rate 0, and nothing in the first copy changes."""
    from cortexlens.data.repeats import generate_repeats

    clean = generate_repeats(400, 3, 4, 15, 31)
    mixed = generate_repeats(400, 3, 4, 15, 31, first_token_rate=0.2)
    assert [d.labels for d in clean] == [d.labels for d in mixed]
    changed = could_change = 0
    for a, b in zip(clean, mixed):
        L, wa, wb = int(a.labels["repeat_length"]), a.text.split(), b.text.split()
        assert wa[:L] == wb[:L] and len(wa) == len(wb) == 31
        for x, y in zip(wa[L:], wb[L:]):
            assert y in (x, wa[0])
            if x != wa[0]:
                could_change += 1
                changed += y != x
    assert abs(changed / could_change - 0.2) < 0.01
    assert generate_repeats(400, 3, 4, 15, 31, first_token_rate=0.0) == clean
