"""Where the store's write time goes: Parquet encoding of real activations, per codec, on one thread.

    python bench/store_encoding.py [--store data/store] [--model minilm] [--dataset corpus]
                                   [--hook resid_post] [--layer 3] [--rounds 5]

Reads one stored hook point (after `make demo`), then writes the same rows again through the store's
own ShardFile (row groups of 4,096) with each codec, with and without byte-stream split, and as a raw
float32 `tofile` (the floor: no encoding at all). Prints the median milliseconds per 10,000 rows,
bytes per row and the size relative to raw float32 (doc_id and pos included). The default (zstd with
byte-stream split on float32 vectors) is the first line; every ratio is against it in the same run. The
second line is the same encoding through ShardFile: what checksums, fsync and the atomic rename add.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from cortexlens.store import tables
from cortexlens.store.reader import iter_activations
from cortexlens.store.shards import ShardFile


def write(directory: Path, codec: str, split: bool | None, doc_id: np.ndarray, pos: np.ndarray, act: np.ndarray
          ) -> int:
    """Bytes of one Parquet file of these rows in batches of 1,024 (about one forward pass's rows):
    pyarrow with ShardFile's options, or (split None) the store's own ShardFile with its defaults, which
    adds the checksum, fsync and atomic rename."""
    schema = tables.activations_schema(act.shape[1], "float32")
    batches = [tables.activations_batch(doc_id[i:i + 1024], pos[i:i + 1024], act[i:i + 1024], "float32")
               for i in range(0, len(act), 1024)]
    if split is None:
        shard = ShardFile(directory, "bench.parquet", schema, codec, 4096)
        for batch in batches:
            shard.append(batch)
        shard.close()
    else:
        with pq.ParquetWriter(directory / "bench.parquet", schema, compression=None if codec == "none" else codec,
                              use_byte_stream_split=["act.list.element"] if split else False,
                              use_dictionary=["doc_id", "pos"], write_statistics=["doc_id", "pos"]) as writer:
            for i in range(0, len(batches), 4):  # row groups of 4,096 rows, as ShardFile writes them
                writer.write_table(pa.Table.from_batches(batches[i:i + 4], schema=schema))
    return (directory / "bench.parquet").stat().st_size


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", type=Path, default=ROOT / "data" / "store")
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--dataset", default="corpus")
    ap.add_argument("--hook", default="resid_post")
    ap.add_argument("--layer", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    pa.set_cpu_count(1)
    point = (args.hook, args.layer)
    batches = list(iter_activations(args.store, args.model, args.dataset, point))
    doc_id = np.concatenate([b.doc_id for b in batches])
    pos = np.concatenate([b.pos for b in batches])
    act = np.ascontiguousarray(np.concatenate([b[point] for b in batches]))
    n, width = act.shape
    raw = act.nbytes + doc_id.nbytes // 2 + pos.nbytes  # float32 vectors + int32 doc_id + int32 pos
    print(f"{args.model}/{args.dataset} {args.hook} {args.layer}: {n:,} rows x {width} float32, one thread, "
          f"median of {args.rounds}; raw float32 {raw / n:.0f} bytes/row")
    contenders = [("zstd", True), ("zstd", None), ("zstd", False), ("lz4", True), ("lz4", False), ("snappy", True), ("none", True),
                  ("none", False)]
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        times: dict[str, list[float]] = {}
        sizes: dict[str, int] = {}
        for _ in range(args.rounds):
            for codec, split in contenders:
                name = ("ShardFile (default, +fsync)" if split is None
                        else f"{codec}{' + byte-stream split' if split else ''}")
                start = time.perf_counter()
                sizes[name] = write(directory, codec, split, doc_id, pos, act)
                times.setdefault(name, []).append(time.perf_counter() - start)
            start = time.perf_counter()
            act.tofile(directory / "raw.bin")
            times.setdefault("raw tofile (no Parquet)", []).append(time.perf_counter() - start)
            sizes["raw tofile (no Parquet)"] = act.nbytes
    base = statistics.median(times["zstd + byte-stream split"])
    for name, values in times.items():
        t = statistics.median(values)
        print(f"  {name:<28} {t / n * 1e4 * 1e3:7.1f} ms per 10k rows ({t / base:4.2f}x the default)  "
              f"{sizes[name] / n:7.1f} bytes/row  ({sizes[name] / raw:.3f} of raw)")


if __name__ == "__main__":
    main()
