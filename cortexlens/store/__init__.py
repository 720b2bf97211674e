"""The Parquet activation store and its SQL views."""

from cortexlens.store.sql import connect, query

__all__ = ["connect", "query"]
