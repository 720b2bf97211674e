"""Peak memory of extraction vs corpus size: it must be set by batch and shard size, not corpus size.

    python bench/extract_memory.py [--docs 1000] [--factor 10]

Runs the extract stage in a fresh process on a corpus of N and of factor*N documents (MiniLM,
resid_post of every layer and the neurons of layer 3) and prints each peak RSS and their ratio
(target: growth < 20%).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import json, resource, sys
from cortexlens.config import load_study
from stages.extract import STAGE
study = load_study(sys.argv[1], require=["extract"])
metrics = STAGE.execute(study, {"model": "minilm"}, progress=False)
peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # Linux: KiB
print(json.dumps({"peak_mib": peak_kib / 1024, "tokens": metrics["datasets"]["corpus"]["tokens"]}))
"""


def peak_rss(n_docs: int, workdir: Path) -> dict:
    params = {
        "study": "bench-memory",
        "paths": {"store": "store", "models": "models", "reports": "reports"},
        "models": {"minilm": {"source": "minilm"}},
        "datasets": {"corpus": {"kind": "builtin", "n_docs": n_docs}},
        "extract": {"models": ["minilm"], "datasets": ["corpus"], "hooks": ["resid_post", {"hook": "mlp_post", "layers": [3]}],
                    "batch_size": 32, "max_length": 64, "shard_rows": 16384},
    }
    (workdir / "params.yaml").write_text(yaml.safe_dump(params))
    proc = subprocess.run([sys.executable, "-c", CHILD, str(workdir / "params.yaml")], check=False, cwd=ROOT,
                          capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if proc.returncode != 0:
        sys.exit(proc.stderr)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=1000)
    ap.add_argument("--factor", type=int, default=10)
    args = ap.parse_args()
    results = {}
    for n in (args.docs, args.docs * args.factor):
        with tempfile.TemporaryDirectory(prefix="cortexlens-mem-") as tmp:
            results[n] = peak_rss(n, Path(tmp))
        print(f"  {n:>7} documents, {results[n]['tokens']:>8} tokens: peak RSS {results[n]['peak_mib']:7.0f} MiB")
    small, large = results[args.docs]["peak_mib"], results[args.docs * args.factor]["peak_mib"]
    print(f"peak RSS ratio ({args.factor}x corpus / 1x) = {large / small:.3f}   (target < 1.20)")


if __name__ == "__main__":
    main()
