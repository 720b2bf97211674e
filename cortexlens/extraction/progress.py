"""Resumable extraction bookkeeping.

A run first writes `_progress/plan.json` (its fingerprint). After every file of shard k is published,
`_progress/shard-k.json` records its document range and checksums. A re-run with the same plan skips
recorded shards and redoes the rest (overwriting any file a killed run had published for them); a
re-run with a different plan starts from scratch. The manifest is written last, then `_progress` goes.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cortexlens.store import layout
from cortexlens.store.atomic import CHECKSUM, remove_temporaries, write_json
from cortexlens.store.shards import FileRecord


@dataclass
class ShardDone:
    shard: int
    doc_start: int
    doc_end: int  # exclusive
    rows: int  # token rows
    truncated: int  # documents cut at max_length
    widths: dict[str, int] = field(default_factory=dict)  # hook name -> stored vector length
    files: dict[str, dict[str, Any]] = field(default_factory=dict)  # relative path -> {rows, xxh3_128}

    @classmethod
    def of(cls, shard: int, doc_start: int, doc_end: int, rows: int, truncated: int, widths: dict[str, int],
           records: list[FileRecord]) -> ShardDone:
        files = {r.path: {"rows": r.rows, CHECKSUM: r.checksum} for r in records}
        return cls(shard, doc_start, doc_end, rows, truncated, widths, files)


class Progress:
    def __init__(self, out_dir: Path, fingerprint: str) -> None:
        self.out_dir = out_dir
        self.fingerprint = fingerprint
        self.dir = out_dir / layout.PROGRESS

    def complete_manifest(self) -> dict[str, Any] | None:
        """The manifest of a finished run with the same plan, if there is one."""
        path = self.out_dir / layout.MANIFEST
        if path.is_file():
            manifest = json.loads(path.read_text())
            if manifest.get("fingerprint") == self.fingerprint:
                return manifest
        return None

    def start(self) -> list[ShardDone]:
        """Prepare the directory and return the shards already done, in order."""
        plan = self.dir / "plan.json"
        same_plan = plan.is_file() and json.loads(plan.read_text()).get("fingerprint") == self.fingerprint
        if not same_plan:
            shutil.rmtree(self.out_dir, ignore_errors=True)
            write_json(plan, {"fingerprint": self.fingerprint})
            return []
        remove_temporaries(self.out_dir)
        done: list[ShardDone] = []
        for path in sorted(self.dir.glob("shard-*.json")):
            shard = ShardDone(**json.loads(path.read_text()))
            if shard.shard != len(done):  # only a contiguous prefix counts
                break
            done.append(shard)
        return done

    def record(self, shard: ShardDone) -> None:
        write_json(self.dir / f"shard-{shard.shard:05d}.json", asdict(shard))

    def finish(self, manifest: dict[str, Any]) -> None:
        write_json(self.out_dir / layout.MANIFEST, manifest)
        shutil.rmtree(self.dir, ignore_errors=True)
