"""Save and load the trained toy model like any Hugging Face model, atomically."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

METRICS_FILE = "training_metrics.json"


def save_toy(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, out_dir: Path,
             metrics: dict, extra: Callable[[Path], None] | None = None) -> None:
    """Write weights (safetensors), config, tokenizer and `training_metrics.json` to `out_dir`;
    `extra(directory)` writes any further files (the fact table) into the same temporary directory.

    Everything goes to a temporary sibling first; `out_dir` is replaced only once that is complete, so a
    crash leaves either the old model or the new one, never a mix and never a half-written directory.
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    old = out_dir.with_name(f".{out_dir.name}.old-{tmp.name.rsplit('-', 1)[-1]}")
    try:
        model.save_pretrained(tmp)  # safetensors: the only format transformers 5 writes
        tokenizer.save_pretrained(tmp)
        (tmp / METRICS_FILE).write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
        if extra is not None:
            extra(tmp)
        # A directory cannot be renamed over a non-empty one: move the old one aside first.
        if out_dir.exists():
            out_dir.rename(old)
        tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old.exists() and not out_dir.exists():
            old.rename(out_dir)  # put the previous model back
        raise
    shutil.rmtree(old, ignore_errors=True)


def load_toy(out_dir: Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The model (in eval mode) and tokenizer, loaded exactly as any stage loads a local model."""
    model = AutoModelForCausalLM.from_pretrained(out_dir, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(out_dir, local_files_only=True)
    return model.eval(), tokenizer
