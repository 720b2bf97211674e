"""params.yaml: read, validate once, and hand out typed, resolved settings.

`load_study(path)` is the only way stages and the CLI read params (see `study.py`). Names are
imported lazily so that light commands (`cortexlens sql`) do not pay for torch and transformers,
which the semantic checks need.
"""

from typing import Any

_EXPORTS = {
    "Study": "cortexlens.config.study", "load_study": "cortexlens.config.study",
    "parse_params": "cortexlens.config.study", "Params": "cortexlens.config.schema",
    "Extract": "cortexlens.config.schema", "ModelSpec": "cortexlens.config.schema",
    "TrainToy": "cortexlens.config.schema", "DatasetSpec": "cortexlens.config.schema",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'cortexlens.config' has no attribute {name!r}")
