"""Hook-point names: TransformerLens-style canonical names, the short aliases params.yaml uses, raw module paths.

A hook point is (hook, layer): `HookPoint("resid_post", 3)` is `blocks.3.hook_resid_post`.
Raw module paths (`module:transformer.h.3.mlp`) reach any module of any model; their layer is the
first integer in the path (3 here), or -1 when the path has none.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# alias -> TransformerLens name under `blocks.{L}.`; the order is the order hooks fire in a pre-norm block.
CANONICAL_SUFFIX: dict[str, str] = {
    "resid_pre": "hook_resid_pre",
    "attn_z": "attn.hook_z",
    "attn_out": "hook_attn_out",
    "resid_mid": "hook_resid_mid",
    "mlp_in": "hook_mlp_in",
    "mlp_pre": "mlp.hook_pre",
    "mlp_post": "mlp.hook_post",
    "mlp_out": "hook_mlp_out",
    "resid_post": "hook_resid_post",
}
HOOK_ALIASES: tuple[str, ...] = tuple(CANONICAL_SUFFIX)
# TransformerLens' own short names (utils.get_act_name) are accepted too.
SYNONYMS: dict[str, str] = {"z": "attn_z", "hook_z": "attn_z", "pre": "mlp_pre", "post": "mlp_post"}
RESIDUAL_HOOKS: tuple[str, ...] = ("resid_pre", "resid_mid", "resid_post")
MODULE_PREFIX = "module:"

_SUFFIX_TO_ALIAS = {suffix: alias for alias, suffix in CANONICAL_SUFFIX.items()}
_CANONICAL_RE = re.compile(r"^blocks\.(\d+)\.(.+)$")


@dataclass(frozen=True, order=True)
class HookPoint:
    """One place in a model to read (or patch) an activation."""

    hook: str  # an alias of CANONICAL_SUFFIX, or "module:<path>"
    layer: int  # block index; -1 for a module path without one

    @property
    def is_module(self) -> bool:
        return self.hook.startswith(MODULE_PREFIX)

    @property
    def module_path(self) -> str:
        return self.hook[len(MODULE_PREFIX):]

    @property
    def name(self) -> str:
        """The canonical name: `blocks.3.hook_resid_post`, or the `module:` string itself."""
        if self.is_module:
            return self.hook
        return f"blocks.{self.layer}.{CANONICAL_SUFFIX[self.hook]}"

    def __str__(self) -> str:
        return self.name


class UnknownHookError(ValueError):
    pass


def canonical_alias(text: str) -> str | None:
    """`resid_post`, `z`, `hook_resid_post` -> the alias; None when the text names no hook."""
    if text in CANONICAL_SUFFIX:
        return text
    if text in SYNONYMS:
        return SYNONYMS[text]
    return _SUFFIX_TO_ALIAS.get(text)


def layer_of_module_path(path: str) -> int:
    """The block index of a module path: the first purely numeric component, else -1."""
    for part in path.split("."):
        if part.isdigit():
            return int(part)
    return -1


def parse_hook(text: str) -> tuple[str, int | None]:
    """Parse one hook entry of params.yaml.

    Returns (hook, layer) where layer is None when the entry leaves layers to the `layers` key:
    `resid_post` -> ("resid_post", None); `blocks.3.attn.hook_z` -> ("attn_z", 3);
    `module:transformer.h.3.mlp` -> ("module:transformer.h.3.mlp", 3).
    """
    text = text.strip()
    if text.startswith(MODULE_PREFIX):
        path = text[len(MODULE_PREFIX):]
        if not path or any(not part for part in path.split(".")):
            raise UnknownHookError(f"empty or malformed module path in {text!r}")
        return text, layer_of_module_path(path)
    match = _CANONICAL_RE.match(text)
    if match:
        alias = canonical_alias(match.group(2))
        if alias is None:
            raise UnknownHookError(f"unknown hook {match.group(2)!r} in {text!r}")
        return alias, int(match.group(1))
    alias = canonical_alias(text)
    if alias is None:
        raise UnknownHookError(f"unknown hook {text!r}")
    return alias, None
