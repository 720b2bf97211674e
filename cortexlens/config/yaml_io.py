"""Read params.yaml strictly: syntax errors with line and column, duplicate keys refused.

PyYAML silently keeps the last of two equal keys; a study whose `extract:` section appears twice
would run with half of what its author wrote, so duplicates are an error here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from cortexlens.errors import ConfigError


class _StrictLoader(yaml.SafeLoader):
    pass


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict[Any, yaml.Mark] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (first at line {seen[key].line + 1})", key_node.start_mark)
        seen[key] = key_node.start_mark
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def read_yaml(path: Path) -> dict[str, Any]:
    """The top-level mapping of a params file; ConfigError naming the file (and line) otherwise."""
    if not path.is_file():
        raise ConfigError(f"{path}: file not found")
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_StrictLoader)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise ConfigError(f"{where}: invalid YAML: {err.problem or err.context}") from None
    except yaml.reader.ReaderError as err:  # a NUL or other control character: not YAML text at all
        code = err.character if isinstance(err.character, int) else ord(err.character)
        text = path.read_text(encoding="utf-8")[:err.position]
        line, column = text.count("\n") + 1, err.position - (text.rfind("\n") + 1) + 1
        raise ConfigError(f"{path}:{line}:{column}: invalid YAML: control character U+{code:04X} "
                          f"is not allowed in YAML text") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: invalid YAML: {str(err).splitlines()[0]}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a UTF-8 text file") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level, got {type(data).__name__}")
    return data
