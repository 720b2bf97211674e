"""CortexLens: a declarative, reproducible pipeline for studying the insides of transformer language models."""

from cortexlens._env import quiet_defaults

quiet_defaults()

__version__ = "0.1.0"
