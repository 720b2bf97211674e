"""Arrow schemas of the extraction tables, and builders from numpy arrays (no per-row Python)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

ARROW_FLOATS = {"float32": pa.float32(), "float16": pa.float16()}
NUMPY_FLOATS = {"float32": np.float32, "float16": np.float16}


def vector_type(width: int, store_dtype: str) -> pa.DataType:
    return pa.list_(ARROW_FLOATS[store_dtype], width)


def activations_schema(width: int, store_dtype: str) -> pa.Schema:
    return pa.schema([("doc_id", pa.int64()), ("pos", pa.int32()), ("act", vector_type(width, store_dtype))])


def pooled_schema(width: int, store_dtype: str) -> pa.Schema:
    return pa.schema([("doc_id", pa.int64()), ("pooling", pa.string()), ("n_tokens", pa.int32()),
                      ("act", vector_type(width, store_dtype))])


TOKENS_SCHEMA = pa.schema([("doc_id", pa.int64()), ("pos", pa.int32()), ("token_id", pa.int32()),
                           ("token", pa.string())])
DOCUMENTS_SCHEMA = pa.schema([("doc_id", pa.int64()), ("text", pa.string()), ("n_tokens", pa.int32()),
                              ("truncated", pa.bool_()), ("labels", pa.map_(pa.string(), pa.string()))])


def vectors(matrix: np.ndarray, store_dtype: str) -> pa.FixedSizeListArray:
    """[rows, width] -> a fixed-size list column; zero-copy when the dtype already matches."""
    values = np.ascontiguousarray(matrix, dtype=NUMPY_FLOATS[store_dtype])
    return pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), values.shape[1])


def activations_batch(doc_id: np.ndarray, pos: np.ndarray, act: np.ndarray, store_dtype: str) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays(
        [pa.array(doc_id, pa.int64()), pa.array(pos, pa.int32()), vectors(act, store_dtype)],
        schema=activations_schema(act.shape[1], store_dtype))


def pooled_batch(doc_id: np.ndarray, pooling: list[str], n_tokens: np.ndarray, act: np.ndarray,
                 store_dtype: str) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays(
        [pa.array(doc_id, pa.int64()), pa.array(pooling, pa.string()), pa.array(n_tokens, pa.int32()),
         vectors(act, store_dtype)],
        schema=pooled_schema(act.shape[1], store_dtype))
