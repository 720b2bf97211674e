"""Document sources named in params.yaml `datasets`: built-in corpora and concepts, user files, hub datasets.

Every source is sized and validated when opened (so a bad file fails before any shard is written)
and then streamed document by document: memory does not grow with corpus size.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from cortexlens.config.schema import (
    BuiltinCorpus,
    ConceptsDataset,
    DatasetSpec,
    FileDataset,
    HuggingFaceDataset,
    PassagesDataset,
    RepeatsDataset,
    project_path,
)
from cortexlens.data.concepts import CONCEPTS_VERSION, generate_concepts
from cortexlens.data.corpus import CORPUS_VERSION, Document, generate_corpus
from cortexlens.data.passages import PASSAGES_VERSION, generate_passages
from cortexlens.data.repeats import generate_repeats
from cortexlens.errors import DatasetError


@dataclass
class DocumentSource:
    name: str
    n_docs: int
    fingerprint: str  # changes whenever the documents could change
    _iterate: Callable[[], Iterator[Document]]

    def __iter__(self) -> Iterator[Document]:
        return self._iterate()

    def __len__(self) -> int:
        return self.n_docs


def open_dataset(name: str, spec: DatasetSpec, root: Path) -> DocumentSource:
    if isinstance(spec, BuiltinCorpus):
        return DocumentSource(name, spec.n_docs, f"builtin/{CORPUS_VERSION}:n_docs={spec.n_docs}:seed={spec.seed}",
                              lambda: iter(generate_corpus(spec.n_docs, spec.seed)))
    if isinstance(spec, RepeatsDataset):
        settings = (spec.n_docs, spec.seed, spec.min_repeat, spec.max_repeat, spec.length, spec.first_token_rate)
        return DocumentSource(name, spec.n_docs, "repeats:" + ":".join(map(str, settings)),
                              lambda: iter(generate_repeats(*settings)))
    if isinstance(spec, ConceptsDataset):
        names, n, seed = list(spec.concepts), spec.n_per_concept, spec.seed
        return DocumentSource(name, len(names) * n, f"concepts/{CONCEPTS_VERSION}:{','.join(names)}:{n}:{seed}",
                              lambda: iter(generate_concepts(names, n, seed)))
    if isinstance(spec, PassagesDataset):
        shape = (spec.n_passages, spec.sentences_per_passage, spec.seed)
        return DocumentSource(name, spec.n_passages * spec.sentences_per_passage,
                              f"passages/{PASSAGES_VERSION}/{CORPUS_VERSION}:" + ":".join(map(str, shape)),
                              lambda: iter(generate_passages(*shape)))
    if isinstance(spec, FileDataset):
        return _open_file(name, spec, project_path(root, spec.path))
    if isinstance(spec, HuggingFaceDataset):
        return _open_hub(name, spec)
    raise DatasetError(f"datasets.{name}: unsupported dataset kind")


def _labels(record: dict[str, Any], text_field: str) -> dict[str, str]:
    """Other scalar fields of a record become string labels (queryable as labels['field'])."""
    return {str(k): str(v) for k, v in record.items()
            if k != text_field and isinstance(v, (str, int, float, bool))}


def _file_fingerprint(path: Path, spec: FileDataset) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return f"{spec.kind}:{digest.hexdigest()}:text_field={spec.text_field}:n_docs={spec.n_docs}"


def _open_file(name: str, spec: FileDataset, path: Path) -> DocumentSource:
    if not path.is_file():
        raise DatasetError(f"datasets.{name}.path: file not found: {spec.path}")
    reader = {"text": _text_records, "jsonl": _jsonl_records, "parquet": _parquet_records}[spec.kind]

    def iterate() -> Iterator[Document]:
        records = reader(name, spec, path)
        for doc_id, record in enumerate(records):
            if spec.n_docs is not None and doc_id >= spec.n_docs:
                return
            yield Document(doc_id, record[spec.text_field], _labels(record, spec.text_field))

    n_docs = sum(1 for _ in iterate())  # one validating pass: a bad line fails before any write
    if n_docs == 0:
        raise DatasetError(f"datasets.{name}.path: no documents in {spec.path}")
    return DocumentSource(name, n_docs, _file_fingerprint(path, spec), iterate)


def _text_records(name: str, spec: FileDataset, path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield {spec.text_field: line.rstrip("\n")}


def _jsonl_records(name: str, spec: FileDataset, path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise DatasetError(f"datasets.{name}.path: {spec.path}:{line_no}: invalid JSON: {err.msg}") from None
            if not isinstance(record, dict) or not isinstance(record.get(spec.text_field), str):
                raise DatasetError(f"datasets.{name}.text_field: {spec.path}:{line_no} has no string "
                                   f"field {spec.text_field!r}")
            yield record


def _parquet_records(name: str, spec: FileDataset, path: Path) -> Iterator[dict[str, Any]]:
    try:
        file = pq.ParquetFile(path)
    except Exception as err:  # noqa: BLE001 -- pyarrow raises several types for a non-Parquet file
        raise DatasetError(f"datasets.{name}.path: {spec.path} is not a readable Parquet file: {err}") from None
    columns = file.schema_arrow.names
    if spec.text_field not in columns:
        raise DatasetError(f"datasets.{name}.text_field: column {spec.text_field!r} not in {spec.path} "
                           f"(columns: {', '.join(columns)})")
    for batch in file.iter_batches(batch_size=1024):
        yield from batch.to_pylist()


def _open_hub(name: str, spec: HuggingFaceDataset) -> DocumentSource:
    try:
        import datasets as hf_datasets

        data = hf_datasets.load_dataset(spec.name, spec.config, split=spec.split, revision=spec.revision)
    except Exception as err:  # noqa: BLE001 -- network, auth, missing split: all end the run the same way
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DatasetError(f"datasets.{name}: cannot load Hugging Face dataset {spec.name!r} "
                           f"(hub unreachable or dataset unknown): {first}") from None
    if spec.text_field not in data.column_names:
        raise DatasetError(f"datasets.{name}.text_field: column {spec.text_field!r} not in {spec.name} "
                           f"(columns: {', '.join(data.column_names)})")
    data = data.filter(lambda row: bool(row[spec.text_field] and row[spec.text_field].strip()))
    if spec.n_docs is not None:
        data = data.select(range(min(spec.n_docs, len(data))))

    def iterate() -> Iterator[Document]:
        for doc_id, record in enumerate(data):
            yield Document(doc_id, record[spec.text_field], _labels(record, spec.text_field))

    fingerprint = f"huggingface:{spec.name}:{spec.config}:{spec.split}:{spec.revision}:{data._fingerprint}"
    return DocumentSource(name, len(data), fingerprint, iterate)
