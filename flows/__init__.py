"""Orchestration only: the Prefect flow over dvc.yaml's graph (`python -m flows.pipeline`)."""

import stages  # noqa: F401  (its import says in one line when this interpreter lacks the project)
