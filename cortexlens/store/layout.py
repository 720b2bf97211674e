"""Where things live in the store. One function per path, so no path is spelled in two places.

    <store>/extract/model=<m>/dataset=<d>/
        manifest.json                                   written last: the extraction is complete
        documents/part-NNNNN.parquet                    doc_id, text, n_tokens, truncated, labels
        tokens/part-NNNNN.parquet                       doc_id, pos, token_id, token
        activations/hook=<h>/layer=<L>/part-NNNNN.parquet   doc_id, pos, act FLOAT[width]
        pooled/hook=<h>/layer=<L>/part-NNNNN.parquet        doc_id, pooling, act
        _progress/                                      shard records of an unfinished run

Hive-style `key=value` directories give DuckDB the model, dataset, hook and layer columns.
"""

from __future__ import annotations

from pathlib import Path

from cortexlens.models.hooks import HookPoint

EXTRACT = "extract"
MANIFEST = "manifest.json"
PROGRESS = "_progress"


def model_dir(store: Path, model: str) -> Path:
    """One model's extractions: the unit DVC tracks as the out of `extract@<model>`."""
    return store / EXTRACT / f"model={model}"


def extraction_dir(store: Path, model: str, dataset: str) -> Path:
    return model_dir(store, model) / f"dataset={dataset}"


def part_name(shard: int) -> str:
    return f"part-{shard:05d}.parquet"


def activation_file(shard: int, point: HookPoint) -> str:
    """Relative to the extraction dir."""
    return f"activations/hook={point.hook}/layer={point.layer}/{part_name(shard)}"


def pooled_file(shard: int, point: HookPoint) -> str:
    return f"pooled/hook={point.hook}/layer={point.layer}/{part_name(shard)}"


def tokens_file(shard: int) -> str:
    return f"tokens/{part_name(shard)}"


def documents_file(shard: int) -> str:
    return f"documents/{part_name(shard)}"


def manifests(store: Path) -> list[Path]:
    """Manifests of complete extractions (a running or killed one has none yet)."""
    return sorted((store / EXTRACT).glob(f"model=*/dataset=*/{MANIFEST}"))


def result_manifests(store: Path) -> list[Path]:
    """Manifests of complete analysis results: every manifest.json in the store outside `extract/`."""
    if not store.is_dir():
        return []
    return sorted(path for child in store.iterdir() if child.is_dir() and child.name != EXTRACT
                  for path in child.rglob(MANIFEST))
