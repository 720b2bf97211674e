import os

# Tests never reach the hub; local models load with local_files_only anyway.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import pytest

from tests.tiny_models import save_tiny_model


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """family -> directory of a tiny random model of that family (created once per session)."""
    made: dict[str, object] = {}

    def get(family: str):
        if family not in made:
            made[family] = save_tiny_model(family, tmp_path_factory.mktemp(f"tiny-{family}"))
        return made[family]

    return get
