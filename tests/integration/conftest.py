import pytest

from tests.integration.prefect_support import start_server, stop


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory):
    """A real `prefect server start` on 127.0.0.1 with a private PREFECT_HOME, for the whole session."""
    proc, server = start_server(tmp_path_factory.mktemp("prefect-home"))
    yield server
    stop(proc)
