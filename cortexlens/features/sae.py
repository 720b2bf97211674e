"""Sparse autoencoders in SAELens's folder format, loaded for encoding only.

A folder holds `cfg.json` and `sae_weights.safetensors` with W_enc [d_in, d_sae], b_enc [d_sae],
W_dec [d_sae, d_in], b_dec [d_in] and, for JumpReLU, threshold [d_sae]. The hook point is
`metadata.hook_name` (SAELens 6; top-level `hook_name` in older folders), a TransformerLens name
(`blocks.3.hook_resid_post`); the model is `metadata.model_name` (or `model_name`) when present.

torch is imported only to load or encode, so the params check can read cfg.json without it.

Encoding follows SAELens (`sae_lens/saes/*.py`): x -> optional input normalisation
(`normalize_activations`: none, constant_norm_rescale, layer_norm) -> x - b_dec (when
`apply_b_dec_to_input`, the default) -> pre = x @ W_enc + b_enc, then
* standard (ReLU): relu(pre)
* topk: the k largest of pre (times the decoder row norms when `rescale_acts_by_decoder_norm`), ReLU'd,
  every other latent 0
* jumprelu: relu(pre) where pre > threshold, else 0.
Decoding: f @ W_dec + b_dec (+ x @ W_skip for a transcoder with a skip). A transcoder's folder adds
`metadata.hook_name_out` (the hook point it predicts) and W_dec [d_sae, d_out].

`save_sae` writes the folder from a trained `cortexlens.sae.model.SparseCoder` (BatchTopK saved as a
JumpReLU with its inference threshold), with every key SAELens 6's `SAE.load_from_disk` needs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cortexlens.errors import ConfigError
from cortexlens.models.hooks import HookPoint, UnknownHookError, parse_hook

if TYPE_CHECKING:
    import torch

CFG, WEIGHTS = "cfg.json", "sae_weights.safetensors"
ARCHITECTURES = ("standard", "topk", "jumprelu")
NORMALISATIONS = ("none", "constant_norm_rescale", "layer_norm")


@dataclass(frozen=True)
class SAE:
    sae_id: str
    folder: Path
    architecture: str
    point: HookPoint
    model_name: str | None
    W_enc: torch.Tensor  # [d_in, d_sae]
    b_enc: torch.Tensor  # [d_sae]
    W_dec: torch.Tensor  # [d_sae, d_in]
    b_dec: torch.Tensor  # [d_in]
    threshold: torch.Tensor | None  # [d_sae] (jumprelu)
    k: int | None  # (topk)
    apply_b_dec_to_input: bool = True
    normalize_activations: str = "none"
    rescale_acts_by_decoder_norm: bool = False
    point_out: HookPoint | None = None  # a transcoder's target (metadata.hook_name_out)
    W_skip: torch.Tensor | None = None  # [d_in, d_out] (transcoders with a skip)

    @property
    def d_in(self) -> int:
        return self.W_enc.shape[0]

    @property
    def d_sae(self) -> int:
        return self.W_enc.shape[1]

    @property
    def d_out(self) -> int:
        return self.W_dec.shape[1]

    def decode(self, f: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        """latents [..., d_sae] (and x [..., d_in] for a skip) -> [..., d_out]."""
        import torch

        with torch.no_grad():
            y = f.to(self.W_dec.dtype) @ self.W_dec + self.b_dec
            if self.W_skip is not None:
                y = y + x.to(self.W_skip.dtype) @ self.W_skip
            return y

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """x [..., d_in] -> latents [..., d_sae] (float32)."""
        import torch

        with torch.no_grad():
            return self._encode(x.to(self.W_enc.dtype))

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        import torch

        if self.normalize_activations == "constant_norm_rescale":
            x = x * (self.d_in ** 0.5) / x.norm(dim=-1, keepdim=True)
        elif self.normalize_activations == "layer_norm":
            x = x - x.mean(-1, keepdim=True)
            x = x / (x.std(-1, keepdim=True) + 1e-5)
        if self.apply_b_dec_to_input:
            x = x - self.b_dec
        pre = x @ self.W_enc + self.b_enc  # [..., d_sae]
        if self.architecture == "standard":
            return torch.relu(pre).float()
        if self.architecture == "jumprelu":
            return (torch.relu(pre) * (pre > self.threshold)).float()
        if self.rescale_acts_by_decoder_norm:
            pre = pre * self.W_dec.norm(dim=-1)
        top = torch.topk(pre, k=self.k, dim=-1, sorted=False)
        return torch.zeros_like(pre).scatter_(-1, top.indices, top.values.relu()).float()


def sae_folder(models_dir: Path, sae_id: str) -> Path:
    """Where the pipeline keeps SAE `sae_id`: <paths.models>/sae/<sae_id>/."""
    return Path(models_dir) / "sae" / sae_id


def read_cfg(folder: Path, key: str) -> dict[str, Any]:
    path = Path(folder) / CFG
    if not path.is_file():
        raise ConfigError(f"{key}: no SAE at {folder} (expected {CFG} and {WEIGHTS})")
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ConfigError(f"{key}: {path} is not valid JSON: {err.msg}") from None
    if not isinstance(cfg, dict):
        raise ConfigError(f"{key}: {path} must hold a JSON object")
    return cfg


def _meta(cfg: dict[str, Any], name: str) -> Any:
    return (cfg.get("metadata") or {}).get(name, cfg.get(name))


def cfg_point(cfg: dict[str, Any], key: str, folder: Path) -> HookPoint:
    """The hook point an SAE reads, from its hook_name."""
    hook_name = _meta(cfg, "hook_name")
    if not isinstance(hook_name, str):
        raise ConfigError(f"{key}: {folder / CFG} has no hook_name (metadata.hook_name)")
    try:
        hook, layer = parse_hook(hook_name)
    except UnknownHookError as err:
        raise ConfigError(f"{key}: {folder / CFG}: hook_name {hook_name!r}: {err}") from None
    if layer is None:
        raise ConfigError(f"{key}: {folder / CFG}: hook_name {hook_name!r} names no layer")
    return HookPoint(hook, layer)


def cfg_model(cfg: dict[str, Any]) -> str | None:
    name = _meta(cfg, "model_name")
    return name if isinstance(name, str) else None


def load_sae(folder: Path, sae_id: str, key: str) -> SAE:
    """An SAE folder -> SAE; ConfigError naming `key` and the file for anything it cannot use."""
    from safetensors.torch import load_file

    folder = Path(folder)
    cfg = read_cfg(folder, key)
    architecture = cfg.get("architecture", "standard")
    if architecture not in ARCHITECTURES:
        raise ConfigError(f"{key}: {folder / CFG}: architecture {architecture!r} is not supported "
                          f"({', '.join(ARCHITECTURES)})")
    normalisation = cfg.get("normalize_activations", "none") or "none"
    if normalisation not in NORMALISATIONS:
        raise ConfigError(f"{key}: {folder / CFG}: normalize_activations {normalisation!r} is not supported "
                          f"({', '.join(NORMALISATIONS)}; fold a scaling factor into the weights first)")
    if not (folder / WEIGHTS).is_file():
        raise ConfigError(f"{key}: no {WEIGHTS} in {folder}")
    tensors = load_file(str(folder / WEIGHTS))
    needed = ["W_enc", "b_enc", "W_dec", "b_dec"] + (["threshold"] if architecture == "jumprelu" else [])
    missing = [name for name in needed if name not in tensors]
    if missing:
        raise ConfigError(f"{key}: {folder / WEIGHTS} lacks {', '.join(missing)}")
    W_enc = tensors["W_enc"].float()
    d_in, d_sae = W_enc.shape
    d_out = int(cfg.get("d_out") or d_in)
    shapes = {"b_enc": (d_sae,), "W_dec": (d_sae, d_out), "b_dec": (d_out,), "threshold": (d_sae,),
              "W_skip": (d_in, d_out)}
    wrong = [f"{n} {tuple(tensors[n].shape)} (expected {s})" for n, s in shapes.items()
             if n in tensors and tuple(tensors[n].shape) != s]
    if wrong:
        raise ConfigError(f"{key}: {folder / WEIGHTS}: W_enc is {tuple(W_enc.shape)} but " + ", ".join(wrong))
    k = cfg.get("k")
    if architecture == "topk" and not (isinstance(k, int) and 0 < k <= d_sae):
        raise ConfigError(f"{key}: {folder / CFG}: a topk SAE needs k in 1..{d_sae}, got {k!r}")
    return SAE(sae_id, folder, architecture, cfg_point(cfg, key, folder), cfg_model(cfg), W_enc,
               tensors["b_enc"].float(), tensors["W_dec"].float(), tensors["b_dec"].float(),
               tensors["threshold"].float() if architecture == "jumprelu" else None,
               k if architecture == "topk" else None, bool(cfg.get("apply_b_dec_to_input", True)), normalisation,
               bool(cfg.get("rescale_acts_by_decoder_norm", False)), _point_out(cfg, key, folder),
               tensors["W_skip"].float() if "W_skip" in tensors else None)


def _point_out(cfg: dict[str, Any], key: str, folder: Path) -> HookPoint | None:
    name = _meta(cfg, "hook_name_out")
    if name is None:
        return None
    return cfg_point({"hook_name": name}, key, folder)


SAE_LENS_VERSION = "6.54.12"  # the format version written (SAELens reads it as 6.x, no conversion)


def save_sae(coder: Any, folder: Path, hook_name: str, model_name: str | None, *,
             hook_name_out: str | None = None, metadata: dict[str, Any] | None = None) -> Path:
    """Write `coder` (a SparseCoder, normalisation folded in) as a SAELens-format folder, atomically
    (a temporary folder renamed into place). Returns the folder."""
    import shutil

    from safetensors.torch import save_file

    c = coder.cfg
    architecture = {"relu": "standard", "topk": "topk", "batchtopk": "jumprelu", "jumprelu": "jumprelu"}[c.arch]
    tensors = {name: getattr(coder, name).detach().float().contiguous().clone()
               for name in ("W_enc", "b_enc", "W_dec", "b_dec")}
    threshold = coder.inference_threshold()
    if threshold is not None:
        tensors["threshold"] = threshold.float().contiguous()
    if coder.W_skip is not None:
        tensors["W_skip"] = coder.W_skip.detach().float().contiguous().clone()
    cfg: dict[str, Any] = {
        "architecture": architecture, "d_in": c.d_in, "d_sae": c.d_sae, "dtype": "float32", "device": "cpu",
        "apply_b_dec_to_input": False, "normalize_activations": "none", "reshape_activations": "none",
        "metadata": {"model_name": model_name, "hook_name": hook_name, "hook_head_index": None,
                     "sae_lens_version": SAE_LENS_VERSION, "sae_lens_training_version": SAE_LENS_VERSION,
                     "prepend_bos": True, "context_size": None, "dataset_path": None},
        "cortexlens": {"arch": c.arch, **(metadata or {})},
    }
    if c.arch == "topk":
        cfg.update(k=c.k, rescale_acts_by_decoder_norm=False)
    if hook_name_out is not None:
        cfg["d_out"] = c.out_width
        cfg["metadata"]["hook_name_out"] = hook_name_out
    folder = Path(folder)
    tmp = folder.with_name(f".{folder.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({k: v for k, v in tensors.items()}, str(tmp / WEIGHTS))
    (tmp / CFG).write_text(json.dumps(cfg, indent=2) + "\n", encoding="utf-8")
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return folder
