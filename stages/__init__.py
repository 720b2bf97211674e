"""One module per DVC stage. Run from the repository root: `python -m stages.<name>`.

DVC runs a stage's `cmd` with whatever `python` the caller's PATH finds first; `.venv/bin/dvc repro`
from a shell that never activated the environment finds the system one, which lacks the project.
Say so in one line (exit 2) instead of a ModuleNotFoundError traceback from deep in an import.
"""

import importlib.util
import sys

_NEEDED = ("cortexlens", "torch", "transformers", "prefect")
_missing = [name for name in _NEEDED if importlib.util.find_spec(name) is None]
if _missing:
    print(f"cortexlens: {sys.executable} lacks {', '.join(_missing)}: this interpreter is not the project's "
          f"environment; run `source .venv/bin/activate` (after `make install`) and try again",
          file=sys.stderr)
    raise SystemExit(2)
