"""The `patching` table: one schema for every method, so all results share one view."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

TABLE = "patching"

# The view's contracted columns first (DESIGN.md), then what the methods add. NULL where it does not apply.
SCHEMA = pa.schema([
    ("model", pa.string()), ("task", pa.string()), ("method", pa.string()), ("hook", pa.string()),
    ("layer", pa.int32()), ("pos", pa.int32()), ("head", pa.int32()), ("direction", pa.string()),
    ("effect", pa.float64()), ("logit_diff", pa.float64()),
    ("mode", pa.string()),  # denoising | noising | mean_ablation
    ("token", pa.string()),  # the first prompt's token at pos (positions align across the task's prompts)
    ("clean_logit_diff", pa.float64()), ("corrupted_logit_diff", pa.float64()), ("n_prompts", pa.int32()),
    ("kind", pa.string()),  # causal tracing: resid | mlp | attn
    ("window_layers", pa.int32()),  # causal tracing: layers restored together ("window" is an SQL keyword)
    ("prob", pa.float64()), ("clean_prob", pa.float64()), ("corrupted_prob", pa.float64()),
    ("part", pa.string()),  # subspace: full | row | null (the illusion check's parts)
    ("illusion", pa.bool_()),  # subspace, part full: the effect comes mostly through the null-space part
    ("null_norm", pa.float64()),  # subspace: |v_null| of the unit direction
    ("split", pa.string()),  # subspace/DAS: train | test prompts
    ("previous_token", pa.float64()), ("prefix_matching", pa.float64()),  # heads: attention-pattern scores
])
COLUMNS = SCHEMA.names


def row(**values: Any) -> dict[str, Any]:
    unknown = set(values) - set(COLUMNS)
    if unknown:
        raise KeyError(f"patching rows have no column(s) {', '.join(sorted(unknown))}")
    return {name: values.get(name) for name in COLUMNS}


def table(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=SCHEMA)
