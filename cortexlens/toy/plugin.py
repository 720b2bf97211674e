"""The toy model's SQL view: every head's circuit scores, which train_toy writes (see cortexlens.plugins)."""

from __future__ import annotations

from cortexlens.plugins import Plugin
from cortexlens.store.views import ResultView

HEADS_TABLE = "toy_heads"

TOY_HEADS_VIEW = ResultView(
    "toy_heads", table=HEADS_TABLE, stage="train_toy",
    columns={"model": "VARCHAR", "layer": "INTEGER", "head": "INTEGER", "previous_token": "DOUBLE",
             "prefix_matching": "DOUBLE", "first_token": "DOUBLE", "n_sequences": "INTEGER", "segment_length": "INTEGER"},
    description="per (layer, head) of the toy model: attention-pattern scores on held-out <bos> A A sequences",
)

PLUGIN = Plugin(views=[TOY_HEADS_VIEW])
