"""Analysis plugins: what each package under `cortexlens/` adds to the study's contract.

A package that contributes a params section, SQL views or semantic checks declares them in its
`plugin.py` as `PLUGIN = Plugin(...)`. Nothing else needs editing: `cortexlens check` and every
stage validate the section, `cortexlens sql` and the report get the views, and the result writer
checks the contracted columns. Plugin modules are imported by `cortexlens sql` and `cortexlens
check`, so they (and their package's `__init__`) must stay light: pydantic and the standard library,
no torch, no transformers (a test imports every plugin and checks).

    # cortexlens/probes/plugin.py
    from cortexlens.plugins import Plugin
    from cortexlens.store.views import ResultView

    class ProbeParams(Section):
        models: list[str]
        ...

    PLUGIN = Plugin(
        sections={"probe": ProbeParams},
        views=[ResultView("probes", table="probes", stage="probe", columns={"model": "VARCHAR", ...})],
        checks=[check_probe],          # (study) -> list of "<key>: <problem>" lines
    )
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import BaseModel

    from cortexlens.config.study import Study
    from cortexlens.store.views import ResultView

PLUGIN_MODULE = "plugin"


@dataclass(frozen=True)
class Plugin:
    sections: Mapping[str, type[BaseModel]] = field(default_factory=dict)
    """params.yaml sections: name -> pydantic model (absent sections are None)."""
    views: Sequence[ResultView] = ()
    """SQL views over the result tables this package's stages write."""
    checks: Sequence[Callable[[Study], list[str]]] = ()
    """Checks that need the whole study (names defined elsewhere, layers in range); one line per problem."""


@lru_cache(maxsize=1)
def plugins() -> dict[str, Plugin]:
    """Every `cortexlens/<package>/plugin.py`'s PLUGIN, keyed by package name, in name order."""
    return discover(Path(__file__).parent, __package__ or "cortexlens")


def discover(root: Path, package: str) -> dict[str, Plugin]:
    """The PLUGIN of every `<root>/<subpackage>/plugin.py`, importing them as `<package>.<sub>.plugin`."""
    found: dict[str, Plugin] = {}
    for sub in sorted(p.parent.name for p in root.glob(f"*/{PLUGIN_MODULE}.py")):
        module = importlib.import_module(f"{package}.{sub}.{PLUGIN_MODULE}")
        plugin = getattr(module, "PLUGIN", None)
        if not isinstance(plugin, Plugin):
            raise TypeError(f"{root.name}/{sub}/{PLUGIN_MODULE}.py must define PLUGIN = Plugin(...)")
        found[sub] = plugin
    return found


def plugin_sections() -> dict[str, type[BaseModel]]:
    sections: dict[str, type[BaseModel]] = {}
    for package, plugin in plugins().items():
        for name, model in plugin.sections.items():
            if name in sections:
                raise TypeError(f"params section {name!r} is declared by two plugins (second: {package})")
            sections[name] = model
    return sections


def plugin_views() -> list[ResultView]:
    return [view for plugin in plugins().values() for view in plugin.views]


def plugin_checks() -> list[Callable[[Study], list[str]]]:
    return [check for plugin in plugins().values() for check in plugin.checks]


def views_of_stage(stage: str) -> list[ResultView]:
    """The views over tables `stage` writes: the result writer checks their contracted columns."""
    return [view for view in plugin_views() if view.stage in (stage, None)]


def describe() -> dict[str, Any]:
    """What the plugins declare, for `cortexlens check`: package -> sections and views."""
    return {package: {"sections": list(p.sections), "views": [v.name for v in p.views]}
            for package, p in plugins().items()}
