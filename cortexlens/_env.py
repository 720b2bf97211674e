"""Process-wide defaults set once at import: no telemetry, no noisy progress bars from libraries.

Every value is a default (`setdefault`): a user who exports the variable keeps their choice.
"""

import os

_DEFAULTS = {
    # Telemetry off for Prefect, MLflow, DVC and Hugging Face; it fails silently offline anyway.
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DVC_NO_ANALYTICS": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    # The weight-loading bar and LOAD REPORT table of transformers drown our own progress bars.
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_VERBOSITY": "error",
    "TOKENIZERS_PARALLELISM": "false",
}


def quiet_defaults() -> None:
    for key, value in _DEFAULTS.items():
        os.environ.setdefault(key, value)
