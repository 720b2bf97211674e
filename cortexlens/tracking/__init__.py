"""MLflow tracking: one run per stage run (params, metrics, lineage tags) and the registered toy model.

MLflow is imported only when tracking is enabled, so `tracking.enabled: false` costs nothing.
"""

from cortexlens.tracking.registry import register_toy, toy_model_name
from cortexlens.tracking.run import NullRun, TrackedRun, TrackingError, stage_run
from cortexlens.tracking.uris import registry_uri, tracking_uri

__all__ = ["NullRun", "TrackedRun", "TrackingError", "register_toy", "registry_uri", "stage_run",
           "toy_model_name", "tracking_uri"]
