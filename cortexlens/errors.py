"""User-facing errors. Each carries lines that name the offending key, file or value.

The CLI and every stage print these lines to stderr and exit with status 2; nothing else is printed.
"""


class CortexLensError(Exception):
    """An error caused by the user's input, reported as one line per problem."""

    exit_code = 2

    def __init__(self, *lines: str) -> None:
        self.lines = [line for line in lines if line]
        super().__init__("\n".join(self.lines))


class ConfigError(CortexLensError):
    """params.yaml is invalid: wrong type, unknown key, unknown model, hook or layer."""


class ModelLoadError(CortexLensError):
    """A model or tokenizer could not be resolved or loaded."""


class DatasetError(CortexLensError):
    """A dataset could not be read."""


class StoreError(CortexLensError):
    """The activation store is missing, corrupt or the query is refused."""
