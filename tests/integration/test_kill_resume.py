"""Kill test: SIGKILL an extraction mid-run, re-run it, and get exactly the files of an uninterrupted run."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from cortexlens.store import layout
from cortexlens.store.sql import connect

# ~30 s of real extraction in subprocesses: CI runs it with the slow tests; the resume logic itself is
# covered in `make test` by tests/unit/test_extraction.py and the flow's failure test.
pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def _params(directory: Path) -> Path:
    params = {
        "study": "kill-test",
        "paths": {"store": "store", "models": "models", "reports": "reports"},
        "models": {"minilm": {"source": "minilm"}},
        "datasets": {"corpus": {"kind": "builtin", "n_docs": 480}},
        "extract": {"models": ["minilm"], "datasets": ["corpus"], "hooks": ["resid_post", "mlp_post"],
                    "layers": [0, 3, 5], "batch_size": 16, "shard_rows": 600, "row_group_rows": 256,
                    # A shard closes at a window boundary: windows of 2 x 16 documents give 8 shards here,
                    # each one length-sorted inside (the default 8 x 16 would give 4).
                    "sort_window": 2},
    }
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "params.yaml").write_text(yaml.safe_dump(params))
    return directory / "params.yaml"


def _command(params: Path) -> list[str]:
    return [sys.executable, "-m", "stages.extract", "--params", str(params), "--model", "minilm", "--no-progress"]


def _manifest(directory: Path) -> dict:
    return json.loads((layout.extraction_dir(directory / "store", "minilm", "corpus") / layout.MANIFEST).read_text())


def test_killed_extraction_resumes_to_identical_rows_and_checksums(tmp_path):
    clean = _params(tmp_path / "clean")
    subprocess.run(_command(clean), cwd=ROOT, check=True, capture_output=True)

    killed = _params(tmp_path / "killed")
    progress = layout.extraction_dir(tmp_path / "killed" / "store", "minilm", "corpus") / layout.PROGRESS
    proc = subprocess.Popen(_command(killed), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (progress / "shard-00002.json").exists():  # two shards done, the third in flight
        assert proc.poll() is None, "extraction finished before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (progress.parent / layout.MANIFEST).exists()
    assert connect(tmp_path / "killed" / "store").execute("select count(*) from activations").fetchone()[0] == 0

    subprocess.run(_command(killed), cwd=ROOT, check=True, capture_output=True)
    want, got = _manifest(tmp_path / "clean"), _manifest(tmp_path / "killed")
    assert len(want["shards"]) >= 5
    assert got["rows"] == want["rows"]
    assert [s["files"] for s in got["shards"]] == [s["files"] for s in want["shards"]]  # rows and checksum per file
    assert not progress.exists() and not list(progress.parent.rglob("*.tmp"))
    con = connect(tmp_path / "killed" / "store")
    assert con.execute("select count(*), count(distinct (doc_id, pos, hook, layer)) from activations").fetchone() \
        == (want["rows"]["activations"],) * 2
