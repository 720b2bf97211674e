"""Per-row interventions: an activation-patching sweep as a few batched forward passes.

Row i of a batch is its prompt's corrupted input, with clean activations written in at its own hook
points, positions and heads (`patch_rows` masks select the rows each point's hook touches), so rows of
one batch may patch different layers. Positions are counted over a prompt's real tokens (0 is its
first token, -1 its last), whatever the padding side; position ids come from the attention mask as in
`cortexlens.extraction.batches`, so a padded row computes what the prompt alone computes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from cortexlens.data.corpus import Document
from cortexlens.extraction.batches import accepts_position_ids, tokenize_batch
from cortexlens.models.hooked import HookedModel, HookFn
from cortexlens.models.hooks import HookPoint


def patch_rows(values: torch.Tensor, mask: torch.Tensor) -> HookFn:
    """A hook that replaces the activation by `values` where `mask` is True and leaves the rest.

    values: the activation's shape, [batch, pos, d] (attn_z: [batch, pos, n_heads, d_head]).
    mask: bool, [batch, pos] to replace whole vectors, or [batch, pos, n_heads] (attn_z) per head.
    """
    if mask.dtype != torch.bool:
        raise TypeError(f"patch_rows: mask must be bool, got {mask.dtype}")

    def hook(t: torch.Tensor, point: HookPoint) -> torch.Tensor:
        if tuple(values.shape) != tuple(t.shape):
            raise ValueError(f"patch_rows at {point.name}: values {tuple(values.shape)} do not match "
                             f"the activation {tuple(t.shape)}")
        if mask.ndim not in (2, 3) or mask.ndim > t.ndim - 1 or tuple(mask.shape) != tuple(t.shape[:mask.ndim]):
            per_head = f" or {tuple(t.shape[:3])} per head" if t.ndim == 4 else ""
            raise ValueError(f"patch_rows at {point.name}: mask {tuple(mask.shape)} must be "
                             f"{tuple(t.shape[:2])} [batch, pos]{per_head}")
        m = mask.to(t.device).reshape(*mask.shape, *(1,) * (t.ndim - mask.ndim))  # broadcasts over d
        return torch.where(m, values.to(device=t.device, dtype=t.dtype), t)

    return hook


def _ints(x: int | Sequence[int] | None) -> tuple[int, ...] | None:
    return None if x is None else (int(x),) if isinstance(x, int) else tuple(int(i) for i in x)


@dataclass(frozen=True)
class Patch:
    """One row of a sweep: prompt `prompt`'s corrupted run with its clean activations written in at
    `points` (one or several), at `positions` (None: every real token) and, for attn_z points, at
    `heads` (None: every head; other points are always patched whole)."""

    prompt: int  # index of the prompt in the clean and corrupted batches
    points: HookPoint | tuple[HookPoint, ...]
    positions: int | tuple[int, ...] | None = None  # over real tokens: 0 first, -1 last
    heads: int | tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        # Normalised to tuples so a Patch is hashable and the sweep reads one form.
        points = (self.points,) if isinstance(self.points, HookPoint) else tuple(self.points)
        object.__setattr__(self, "points", points)
        object.__setattr__(self, "positions", _ints(self.positions))
        object.__setattr__(self, "heads", _ints(self.heads))
        if self.heads is not None and not any(p.hook == "attn_z" for p in points):
            raise ValueError(f"patch {self}: heads are given but no point is attn_z")


@dataclass(frozen=True)
class Rows:
    """The rows of one batch of a sweep, as the metric sees them."""

    prompts: torch.Tensor  # [rows] prompt index of each row
    inputs: dict[str, torch.Tensor]  # the rows' corrupted inputs, [rows, pos] each

    @property
    def last_positions(self) -> torch.Tensor:
        """[rows] column of each row's last real token (right or left padding)."""
        mask = self.inputs["attention_mask"].bool()  # [rows, pos]
        return mask.shape[1] - 1 - mask.flip(-1).int().argmax(-1)


# metric(model output, rows) -> [rows, ...]: one value (or tensor) per row.
RowMetric = Callable[[Any, Rows], torch.Tensor]
# row_hooks(rows) -> hooks for one batch of a sweep (e.g. per-row noise), registered before the patches.
RowHooks = Callable[[Rows], Sequence[tuple[HookPoint, HookFn]]]


def logit_diff(correct: torch.Tensor, wrong: torch.Tensor) -> RowMetric:
    """logits[correct] - logits[wrong] at each row's last real token; `correct`, `wrong` are
    [n_prompts] token ids, indexed by each row's prompt."""
    def metric(output: Any, rows: Rows) -> torch.Tensor:
        rows_index = torch.arange(len(rows.prompts), device=output.logits.device)
        logits = output.logits[rows_index, rows.last_positions.to(output.logits.device)]  # [rows, vocab]
        prompts = rows.prompts.to(logits.device)
        picked = logits.gather(1, torch.stack([correct.to(logits.device)[prompts],
                                               wrong.to(logits.device)[prompts]], 1))  # [rows, 2]
        return picked[:, 0] - picked[:, 1]
    return metric


def encode_prompts(model: HookedModel, texts: Sequence[str], padding_side: str = "right") -> dict[str, torch.Tensor]:
    """Tokenize prompts into one padded batch exactly as extraction does (position ids from the mask)."""
    docs = [Document(i, text, {}) for i, text in enumerate(texts)]
    max_length = model.context_length or model.tokenizer.model_max_length
    return tokenize_batch(docs, model.tokenizer, max_length, padding_side, model.device,
                          accepts_position_ids(model.model)).inputs


def with_position_ids(model: HookedModel, inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`inputs` plus position ids from the attention mask, when the model takes them and they are missing."""
    inputs = dict(inputs)
    if "position_ids" not in inputs and "attention_mask" in inputs and accepts_position_ids(model.model):
        inputs["position_ids"] = (inputs["attention_mask"].long().cumsum(-1) - 1).clamp(min=0)  # [batch, pos]
    return inputs


def real_columns(attention_mask: torch.Tensor) -> list[torch.Tensor]:
    """Per prompt, the padded-batch column of each of its real tokens ([n_tokens] each)."""
    return [row.nonzero().squeeze(1) for row in attention_mask.bool().cpu()]


def patch_sweep(model: HookedModel, corrupted: Mapping[str, torch.Tensor], clean: Mapping[str, torch.Tensor],
                patches: Sequence[Patch], metric: RowMetric, batch_size: int = 32,
                clean_cache: Mapping[HookPoint, torch.Tensor] | None = None,
                row_hooks: RowHooks | None = None, progress: Callable[[int], None] | None = None) -> torch.Tensor:
    """metric of every patched run, [n_patches, ...], in `batch_size` rows per forward pass.

    `corrupted` and `clean` are padded batches of the same prompts (input_ids, attention_mask, ...;
    `encode_prompts` makes them): prompt i has as many real tokens in both, and either padding side.
    `clean_cache` holds the clean activations (`model.run_with_cache(clean, points)`), or any other
    values to write in (a mean for ablation, a projection for subspace patching); it is computed when
    None. `metric(output, rows)` returns one value (or tensor) per row. `row_hooks(rows)` adds hooks to
    each batch's forward pass before the patches (so a patch at the same point overrides them: causal
    tracing's noise, which a restored state undoes). `progress(n)` is called after each batch of n rows.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    corrupted, clean = with_position_ids(model, corrupted), with_position_ids(model, clean)
    corrupted_cols = real_columns(corrupted["attention_mask"])
    clean_cols = real_columns(clean["attention_mask"])
    if len(clean_cols) != len(corrupted_cols):
        raise ValueError(f"the clean batch has {len(clean_cols)} prompts, the corrupted one {len(corrupted_cols)}")
    if clean_cache is None:
        needed = list(dict.fromkeys(p for patch in patches for p in patch.points))
        clean_cache = model.run_with_cache(clean, needed)
    clean_shape = tuple(clean["attention_mask"].shape)
    positions = [_check(k, patch, corrupted_cols, clean_cols, clean_cache, clean_shape)
                 for k, patch in enumerate(patches)]
    width = corrupted["attention_mask"].shape[1]
    results = []
    for start in range(0, len(patches), batch_size):
        chunk = range(start, min(start + batch_size, len(patches)))
        prompts = torch.tensor([patches[k].prompt for k in chunk], device=model.device)  # [rows]
        rows = Rows(prompts, {name: t[prompts.to(t.device)] for name, t in corrupted.items()})
        hooks: list[tuple[HookPoint, HookFn]] = list(row_hooks(rows)) if row_hooks is not None else []
        for point, (values, mask) in _row_patches([patches[k] for k in chunk], [positions[k] for k in chunk],
                                                  corrupted_cols, clean_cols, clean_cache, width).items():
            hooks.append((point, patch_rows(values, mask)))
        with torch.no_grad(), model.hooks(hooks):
            results.append(metric(model.forward(rows.inputs), rows).detach())
        if progress is not None:
            progress(len(chunk))
    return torch.cat(results) if results else torch.empty(0)


def _check(k: int, patch: Patch, corrupted_cols: list[torch.Tensor], clean_cols: list[torch.Tensor],
           clean_cache: Mapping[HookPoint, torch.Tensor], clean_shape: tuple[int, ...]) -> torch.Tensor:
    """Validate patch `k` before any forward pass; return its positions ([n] indices over real tokens)."""
    if not 0 <= patch.prompt < len(corrupted_cols):
        raise ValueError(f"patch {k}: prompt {patch.prompt} outside the {len(corrupted_cols)} prompts")
    n = len(corrupted_cols[patch.prompt])
    if len(clean_cols[patch.prompt]) != n:  # patching maps token p onto token p
        raise ValueError(f"patch {k}: prompt {patch.prompt} has {n} corrupted tokens but "
                         f"{len(clean_cols[patch.prompt])} clean ones")
    for point in patch.points:
        if point not in clean_cache:
            raise KeyError(f"patch {k}: no clean activations for {point.name}")
        if tuple(clean_cache[point].shape[:2]) != clean_shape:
            raise ValueError(f"patch {k}: clean activations at {point.name} are "
                             f"{tuple(clean_cache[point].shape[:2])}, the clean batch {clean_shape} [prompts, pos]")
        if patch.heads is not None and point.hook == "attn_z":
            n_heads = clean_cache[point].shape[2]
            if any(not 0 <= h < n_heads for h in patch.heads):
                raise ValueError(f"patch {k}: heads {patch.heads} outside {point.name}'s {n_heads} heads")
    if patch.positions is None:
        return torch.arange(n)
    if any(not -n <= p < n for p in patch.positions):
        raise ValueError(f"patch {k}: positions {patch.positions} outside prompt {patch.prompt}'s {n} tokens")
    return torch.tensor([p % n for p in patch.positions])


def _row_patches(chunk: list[Patch], positions: list[torch.Tensor], corrupted_cols: list[torch.Tensor],
                 clean_cols: list[torch.Tensor], clean_cache: Mapping[HookPoint, torch.Tensor],
                 width: int) -> dict[HookPoint, tuple[torch.Tensor, torch.Tensor]]:
    """Per involved point: clean values laid out in the rows' corrupted columns, and the mask of what
    each row patches there (only rows that target the point have any True)."""
    out: dict[HookPoint, tuple[torch.Tensor, torch.Tensor]] = {}
    for row, (patch, pos) in enumerate(zip(chunk, positions)):
        dst = corrupted_cols[patch.prompt][pos]  # [n] columns in the corrupted batch
        src = clean_cols[patch.prompt][pos]  # [n] columns in the clean batch
        for point in patch.points:
            clean = clean_cache[point]  # [n_prompts, clean_pos, d] or [.., n_heads, d_head]
            per_head = point.hook == "attn_z"
            if point not in out:
                values = clean.new_zeros((len(chunk), width, *clean.shape[2:]))  # [rows, pos, ...]
                mask_shape = (len(chunk), width, clean.shape[2]) if per_head else (len(chunk), width)
                out[point] = values, torch.zeros(mask_shape, dtype=torch.bool, device=clean.device)
            values, mask = out[point]
            values[row, dst.to(values.device)] = clean[patch.prompt, src.to(clean.device)]
            if per_head and patch.heads is not None:
                heads = torch.tensor(patch.heads, device=mask.device)
                mask[row, dst.to(mask.device)[:, None], heads[None, :]] = True  # [n, n_heads_patched]
            else:
                mask[row, dst.to(mask.device)] = True
    return out
