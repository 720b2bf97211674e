"""Turn pydantic's validation errors into one line per problem that names the key path.

`extract.layers[3]: expected an integer, got 'x'` — the path is written as a user would index the
YAML (dots for mappings, [i] for lists); pydantic's union-branch labels are dropped.
"""

from __future__ import annotations

import difflib
import typing
from typing import Any

from pydantic import BaseModel, ValidationError

_TYPE_WORDS = {
    "int_type": "an integer", "int_parsing": "an integer", "int_from_float": "an integer",
    "float_type": "a number", "float_parsing": "a number", "bool_type": "true or false",
    "bool_parsing": "true or false", "string_type": "a string", "list_type": "a list",
    "dict_type": "a mapping", "model_type": "a mapping", "model_attributes_type": "a mapping",
}


def format_path(parts: list[Any]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _data_path(loc: tuple, data: Any) -> list[Any]:
    """Keep the loc entries that index the user's data; drop union-branch labels."""
    parts: list[Any] = []
    node = data
    tag_skipped: set[int] = set()  # mappings whose union-branch tag (their `kind`) was already dropped
    for item in loc:
        # A discriminated union puts the branch's tag (`repeats`) in the location before the field;
        # drop it once per mapping (a field may share the tag's name: `concepts` of kind concepts).
        if isinstance(node, dict) and node.get("kind") == item and id(node) not in tag_skipped:
            tag_skipped.add(id(node))
            continue
        if isinstance(node, dict) and item in node or isinstance(node, list) and isinstance(item, int) and item < len(node):
            parts.append(item)
            node = node[item]
        elif item == "[key]":
            continue
        elif isinstance(node, dict) and isinstance(item, str) and item not in node and _looks_like_key(item):
            parts.append(item)  # a missing or unknown key
            node = None
    return parts


def _looks_like_key(item: str) -> bool:
    return not any(ch in item for ch in "[]'\"( ") and not item[:1].isupper()


def _model_at(root: type[BaseModel], parts: list[Any], data: Any) -> type[BaseModel] | None:
    """The pydantic model class describing the mapping at `parts` (to list allowed keys)."""
    annotation: Any = root
    node = data
    for part in parts:
        cls = _unwrap(annotation, node)
        if isinstance(cls, type) and issubclass(cls, BaseModel) and isinstance(part, str):
            field = cls.model_fields.get(part)
            if field is None:
                return None
            annotation = field.annotation
        elif typing.get_origin(cls) in (dict, list):
            annotation = typing.get_args(cls)[-1]
        else:
            return None
        node = node[part] if isinstance(node, (dict, list)) and _has(node, part) else None
    cls = _unwrap(annotation, node)
    return cls if isinstance(cls, type) and issubclass(cls, BaseModel) else None


def _has(node: Any, part: Any) -> bool:
    return part in node if isinstance(node, dict) else isinstance(part, int) and part < len(node)


def _unwrap(annotation: Any, node: Any) -> Any:
    """Strip Annotated/Optional/Union, choosing a discriminated branch by the data's `kind`."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
            continue
        if origin in (typing.Union, __import__("types").UnionType):
            branches = [a for a in typing.get_args(annotation) if a is not type(None)]
            models = [b for b in branches if isinstance(b, type) and issubclass(b, BaseModel)]
            if len(models) > 1 and isinstance(node, dict):
                kind = node.get("kind")
                chosen = [m for m in models if kind in typing.get_args(m.model_fields["kind"].annotation)]
                annotation = chosen[0] if chosen else models[0]
            else:
                annotation = (models or branches)[0]
            continue
        return annotation


def _describe(err: dict) -> str:
    kind = err["type"]
    value = err.get("input")
    ctx = err.get("ctx") or {}
    if kind in _TYPE_WORDS:
        return f"expected {_TYPE_WORDS[kind]}, got {value!r}"
    if kind == "missing":
        return "required key missing"
    if kind == "literal_error":
        return f"expected {ctx.get('expected')}, got {value!r}"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        op = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}[kind]
        bound = next(iter(ctx.values()))
        return f"must be {op} {bound}, got {value!r}"
    if kind == "too_short":
        return "must not be empty"
    if kind == "string_pattern_mismatch":
        return (f"{value!r} is not a valid name (letters, digits, '_', '.', '-'; "
                f"starting with a letter or digit)")
    if kind == "union_tag_invalid":
        return f"unknown kind {ctx.get('tag')!r} (allowed: {ctx.get('expected_tags')})"
    if kind == "union_tag_not_found":
        return "required key 'kind' missing"
    if kind == "value_error":
        return str(ctx.get("error", err["msg"]))
    return err["msg"]


def _unknown_key(root: type[BaseModel], parts: list[Any], data: Any) -> str:
    parent = _model_at(root, parts[:-1], data)
    if parent is None:
        return "unknown key"
    allowed = list(parent.model_fields)
    hint = difflib.get_close_matches(str(parts[-1]), allowed, n=1)
    suffix = f"; did you mean {hint[0]!r}?" if hint else ""
    return f"unknown key (allowed: {', '.join(allowed)}){suffix}"


def _describe_union(group: list[dict]) -> str:
    """Several branches of a union failed at the same key: one line listing what would fit."""
    wanted: list[str] = []
    for err in group:
        if err["type"] == "literal_error":
            wanted.append(str(err.get("ctx", {}).get("expected")))
        elif err["type"] in _TYPE_WORDS:
            wanted.append(_TYPE_WORDS[err["type"]])
    wanted = list(dict.fromkeys(wanted))
    if not wanted:
        return _describe(group[0])
    return f"expected {' or '.join(wanted)}, got {group[0].get('input')!r}"


def validation_lines(root: type[BaseModel], error: ValidationError, data: Any) -> list[str]:
    """One line per problem, in document order, `<key path>: <what is wrong>`."""
    located = [(_data_path(e["loc"], data), e) for e in error.errors(include_url=False)]
    # A deeper error explains a shallower one on the same branch (`layers[1]` beats `layers`).
    paths = [tuple(p) for p, _ in located]
    kept = [(p, e) for p, e in located
            if not any(len(other) > len(p) and other[: len(p)] == tuple(p) for other in paths)]
    groups: dict[tuple, list[dict]] = {}
    for parts, err in kept:
        groups.setdefault(tuple(parts), []).append(err)
    lines = []
    for parts, group in groups.items():
        path = format_path(list(parts)) or "(top level)"
        if group[0]["type"] in ("union_tag_invalid", "union_tag_not_found"):
            path = format_path([*parts, "kind"])
        if group[0]["type"] == "extra_forbidden":
            lines.append(f"{path}: {_unknown_key(root, list(parts), data)}")
        elif len(group) > 1:
            lines.append(f"{path}: {_describe_union(group)}")
        else:
            lines.append(f"{path}: {_describe(group[0])}")
    return lines
