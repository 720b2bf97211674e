"""Reading speed and memory of the store reader: iter_activations vs pyarrow read_table vs DuckDB SQL.

    python bench/reader.py [--rows 1000000] [--width 384] [--rounds 3] [--store DIR]

Builds a synthetic store (random-normal float32, written by the store's own ShardFile in the
extraction layout with the default shard and row-group sizes, and a manifest) in a temporary
directory, or reuses `--store DIR` if it holds one of that size. Then prints, as medians over
interleaved rounds, rows/s of
  ours      : a full iter_activations pass (batches of 8192 rows as numpy views)
  read_table: pyarrow.parquet.read_table of the same files, converted to one numpy matrix
  duckdb    : `select doc_id, pos, act from activations where ...` -> to_arrow_table() -> numpy
and, for reference, read_table to Arrow alone (no numpy matrix); the ratios ours/read_table
(target >= 0.8) and ours/duckdb; and the peak RSS of a full iter_activations pass over a store of
--small-rows vs --rows rows, each in a fresh process (target growth < 20%).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import pyarrow.parquet as pq

from bench.common import time_rounds
from cortexlens.models.hooks import HookPoint
from cortexlens.store import catalog, layout, tables
from cortexlens.store.atomic import CHECKSUM, write_json
from cortexlens.store.reader import iter_activations
from cortexlens.store.shards import ShardFile
from cortexlens.store.sql import connect

MODEL, DATASET = "bench", "synthetic"
POINT = HookPoint("resid_post", 0)
DOCS_PER_BATCH = 32  # as extraction writes: batches of whole documents


def _documents_batch(doc_ids: np.ndarray, lengths: np.ndarray):
    import pyarrow as pa

    return pa.RecordBatch.from_pydict({
        "doc_id": doc_ids, "text": [""] * len(doc_ids), "n_tokens": lengths.astype(np.int32),
        "truncated": [False] * len(doc_ids), "labels": [[] for _ in doc_ids]}, schema=tables.DOCUMENTS_SCHEMA)


def _shard(root: Path, shard: int, doc: int, rows_left: int, width: int, shard_rows: int, row_group_rows: int,
           rng: np.random.Generator) -> dict:
    """One shard of whole documents (8-64 tokens), closed at the first batch past `shard_rows` rows."""
    acts = ShardFile(root, layout.activation_file(shard, POINT), tables.activations_schema(width, "float32"),
                     "zstd", row_group_rows)
    docs = ShardFile(root, layout.documents_file(shard), tables.DOCUMENTS_SCHEMA, "zstd", row_group_rows)
    doc_start, rows = doc, 0
    while rows < shard_rows and rows_left > 0:
        lengths = rng.integers(8, 65, size=DOCS_PER_BATCH)
        lengths = lengths[np.cumsum(lengths) - lengths < rows_left]  # whole documents up to the target
        lengths[-1] = min(lengths[-1], rows_left - (lengths.sum() - lengths[-1]))
        doc_ids = np.arange(doc, doc + len(lengths), dtype=np.int64)
        n = int(lengths.sum())
        pos = np.arange(n) - np.repeat(np.cumsum(lengths) - lengths, lengths)  # [n]
        act = rng.standard_normal((n, width), dtype=np.float32)  # [n, width]
        acts.append(tables.activations_batch(np.repeat(doc_ids, lengths), pos, act, "float32"))
        docs.append(_documents_batch(doc_ids, lengths))
        doc, rows, rows_left = doc + len(lengths), rows + n, rows_left - n
    records = [docs.close(), acts.close()]
    return {"shard": shard, "doc_start": doc_start, "doc_end": doc, "rows": rows, "truncated": 0,
            "widths": {POINT.name: width}, "files": {r.path: {"rows": r.rows, CHECKSUM: r.checksum} for r in records}}


def build_store(store: Path, rows: int, width: int, shard_rows: int, row_group_rows: int, seed: int = 0) -> None:
    """A store of one extraction with `rows` token rows of one hook point, as `catalog` reads it."""
    root = layout.extraction_dir(store, MODEL, DATASET)
    rng = np.random.default_rng(seed)
    shards: list[dict] = []
    while (done := sum(s["rows"] for s in shards)) < rows:
        doc = shards[-1]["doc_end"] if shards else 0
        shards.append(_shard(root, len(shards), doc, rows - done, width, shard_rows, row_group_rows, rng))
    write_json(root / layout.MANIFEST, {
        "format": "cortexlens.extraction/1", "fingerprint": f"bench:{rows}x{width}:{seed}",
        "model": {"name": MODEL}, "dataset": {"name": DATASET, "n_docs": shards[-1]["doc_end"]},
        "settings": {"store_dtype": "float32", "shard_rows": shard_rows, "row_group_rows": row_group_rows,
                     "pooling": [], "compression": "zstd"},
        "hooks": [{"hook": POINT.hook, "layer": POINT.layer, "name": POINT.name, "width": width}],
        "rows": {"activations": rows, "documents": shards[-1]["doc_end"]}, "shards": shards})


def ensure_store(store: Path, rows: int, width: int, shard_rows: int, row_group_rows: int) -> None:
    if (store / layout.EXTRACT).exists():
        ext = catalog.extraction(store, MODEL, DATASET)
        if ext.rows("activations", POINT) == rows and ext.width(POINT) == width:
            return
        sys.exit(f"{store} holds another store; remove it or pass another --store")
    build_store(store, rows, width, shard_rows, row_group_rows)


def ours(store: Path) -> int:
    return sum(len(batch) for batch in iter_activations(store, MODEL, DATASET, POINT, batch_rows=8192))


def read_table(store: Path, to_numpy: bool = True) -> int:
    files = [f.path for f in catalog.extraction(store, MODEL, DATASET).files("activations", POINT)]
    table = pq.read_table(files, columns=["doc_id", "pos", "act"])
    if not to_numpy:
        return table.num_rows
    width = table.schema.field("act").type.list_size
    X = np.concatenate([c.flatten().to_numpy().reshape(-1, width) for c in table.column("act").chunks])
    return len(X)


def duckdb_sql(store: Path) -> int:
    con = connect(store)
    table = con.sql(f"select doc_id, pos, act from activations where model = '{MODEL}' and dataset = "
                    f"'{DATASET}' and hook = '{POINT.hook}' and layer = {POINT.layer}").to_arrow_table()
    act = table.column("act").combine_chunks()
    X = act.flatten().to_numpy().reshape(len(act), -1)  # LIST -> [rows, width]
    con.close()
    return len(X)


# A fresh process per store. Peak RSS is VmHWM of /proc/self/status: ru_maxrss is not used because
# Linux carries the parent's peak across fork+exec into the child's ru_maxrss.
CHILD = """
import json, sys
from cortexlens.store.reader import iter_activations

def mib(key):
    line = next(l for l in open("/proc/self/status") if l.startswith(key + ":"))
    return int(line.split()[1]) / 1024

base = mib("VmRSS")  # after imports, before reading
rows = sum(len(b) for b in iter_activations(sys.argv[1], sys.argv[2], sys.argv[3], (sys.argv[4], int(sys.argv[5])),
                                            batch_rows=8192))
print(json.dumps({"rows": rows, "base_mib": base, "peak_mib": mib("VmHWM")}))
"""


def peak_rss(store: Path) -> dict:
    proc = subprocess.run([sys.executable, "-c", CHILD, str(store), MODEL, DATASET, POINT.hook, str(POINT.layer)],
                          capture_output=True, text=True, check=False, cwd=Path(__file__).resolve().parents[1])
    if proc.returncode != 0:
        sys.exit(proc.stderr)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--small-rows", type=int, default=100_000)
    ap.add_argument("--width", type=int, default=384)
    ap.add_argument("--shard-rows", type=int, default=16384)  # the extract defaults
    ap.add_argument("--row-group-rows", type=int, default=4096)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--store", type=Path, help="build (or reuse) the stores under this directory")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="cortexlens-reader-") as tmp:
        base = args.store or Path(tmp)
        big, small = base / f"rows-{args.rows}", base / f"rows-{args.small_rows}"
        for store, rows in ((big, args.rows), (small, args.small_rows)):
            ensure_store(store, rows, args.width, args.shard_rows, args.row_group_rows)
        ext = catalog.extraction(big, MODEL, DATASET)
        files = ext.files("activations", POINT)
        size = sum(f.path.stat().st_size for f in files)
        print(f"store: {args.rows} rows x {args.width} float32 ({args.rows * args.width * 4 / 1e9:.2f} GB raw, "
              f"{size / 1e9:.2f} GB zstd), {len(files)} shards, row groups of ~{args.row_group_rows} rows")
        counts = {"ours": ours(big), "read_table": read_table(big), "duckdb": duckdb_sql(big)}
        assert set(counts.values()) == {args.rows}, counts
        times = time_rounds({"ours": lambda: ours(big), "read_table": lambda: read_table(big),
                             "duckdb": lambda: duckdb_sql(big),
                             "(read_table, Arrow only)": lambda: read_table(big, to_numpy=False)}, args.rounds)
        memory = {rows: peak_rss(store) for store, rows in ((small, args.small_rows), (big, args.rows))}
    print(f"\n{'contender':<26}{'seconds':>9}{'rows/s':>14}")
    for name, seconds in times.items():
        print(f"{name:<26}{seconds:>9.2f}{args.rows / seconds:>14,.0f}")
    print(f"\nours/read_table = {times['read_table'] / times['ours']:.2f}   (target >= 0.8)")
    print(f"ours/duckdb     = {times['duckdb'] / times['ours']:.2f}")
    print(f"(ours/read_table without the numpy matrix = {times['(read_table, Arrow only)'] / times['ours']:.2f})")
    print(f"\n{'store rows':>10}{'RSS after imports MiB':>23}{'peak RSS MiB':>14}")
    for rows, result in memory.items():
        assert result["rows"] == rows, result
        print(f"{rows:>10}{result['base_mib']:>23.0f}{result['peak_mib']:>14.0f}")
    ratio = memory[args.rows]["peak_mib"] / memory[args.small_rows]["peak_mib"]
    print(f"peak RSS ratio ({args.rows} / {args.small_rows} rows) = {ratio:.3f}   (target < 1.20)")


if __name__ == "__main__":
    main()
