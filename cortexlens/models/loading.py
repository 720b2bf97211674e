"""Resolve a model source (built-in alias, local directory, hub id) and load it with its tokenizer.

Local directories and built-in aliases are loaded with `local_files_only=True`: the hub is never
contacted for them. Hub ids go through the normal Hugging Face cache and download path.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import torch
import transformers
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoTokenizer, PretrainedConfig

from cortexlens.errors import ModelLoadError
from cortexlens.models.describe import read_config
from cortexlens.models.hooked import HookedModel
from cortexlens.models.sources import BUILTIN_ALIASES, ResolvedSource, minilm_dir, resolve_source

__all__ = ["BUILTIN_ALIASES", "ResolvedSource", "fingerprint", "load_config", "load_hooked_model", "minilm_dir",
           "model_class", "resolve_device", "resolve_source"]

TORCH_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def load_config(resolved: ResolvedSource, key: str) -> PretrainedConfig:
    """The model's config as transformers reads it (no weights). `key` names the params entry in errors."""
    read_config(resolved, key)  # a missing directory or config.json: the same one line as `cortexlens check`
    try:
        return AutoConfig.from_pretrained(resolved.location, revision=resolved.revision,
                                          local_files_only=resolved.is_local)
    except (OSError, ValueError) as err:
        raise ModelLoadError(f"{key}: cannot load the config of {resolved.location!r}: {_first_line(err)}") from None


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def model_class(config: PretrainedConfig) -> type:
    """The class named in config.architectures when transformers has it; else CausalLM, else base."""
    for arch in getattr(config, "architectures", None) or []:
        cls = getattr(transformers, arch, None)
        if cls is not None:
            return cls
    if type(config) in AutoModelForCausalLM._model_mapping:
        return AutoModelForCausalLM
    return AutoModel


def resolve_device(device: str) -> torch.device:
    """`auto` picks CUDA when present, then MPS, else CPU."""
    if device != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


# from_pretrained builds weights under process-global state (a `meta` default device, init flags):
# two threads loading at once (a flow fanning out over models) corrupt each other's load.
_LOAD_LOCK = threading.Lock()


def load_hooked_model(name: str, resolved: ResolvedSource, device: torch.device, dtype: str = "float32",
                      attn_implementation: str | None = None, init: str = "trained",
                      init_seed: int = 0) -> HookedModel:
    """Load weights and tokenizer, unmodified, and wrap them with named hook points.

    `init="random"` builds the same architecture from its config with freshly initialised weights
    (transformers' own `_init_weights`, under `torch.manual_seed(init_seed)`): the untrained control of a
    model, with the trained model's tokenizer. The same seed gives the same weights."""
    key = f"models.{name}.source"
    config = load_config(resolved, key)
    kwargs: dict = {"dtype": TORCH_DTYPES[dtype]}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    try:
        with _LOAD_LOCK:
            if init == "random":
                model = _randomly_initialised(config, init_seed, kwargs).to(device)
            else:
                model = model_class(config).from_pretrained(resolved.location, revision=resolved.revision,
                                                            local_files_only=resolved.is_local, **kwargs).to(device)
            tokenizer = AutoTokenizer.from_pretrained(resolved.location, revision=resolved.revision,
                                                      local_files_only=resolved.is_local)
    except (OSError, ValueError) as err:
        raise ModelLoadError(f"{key}: cannot load {resolved.location!r}: {_first_line(err)}") from None
    if tokenizer.pad_token is None:
        # Pad positions are masked and never stored, so any existing token id serves as padding.
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token or tokenizer.bos_token
    return HookedModel(name, model, tokenizer, device)


def _randomly_initialised(config: PretrainedConfig, seed: int, kwargs: dict) -> torch.nn.Module:
    from cortexlens.seeding import seeded

    cls = model_class(config)
    with seeded(seed):  # the global generator, alone (another stage may be initialising weights too)
        if cls in (AutoModel, AutoModelForCausalLM):
            return cls.from_config(config, **kwargs)
        return cls._from_config(config, **kwargs)


def fingerprint(resolved: ResolvedSource, config: PretrainedConfig) -> str:
    """A revision identifier for the manifest: the hub commit, or a sha256 over a local dir's files."""
    commit = getattr(config, "_commit_hash", None)
    if resolved.kind == "hub" and commit:
        return commit
    digest = hashlib.sha256()
    for path in sorted(Path(resolved.location).rglob("*")):
        if path.is_file():
            digest.update(path.relative_to(resolved.location).as_posix().encode())
            with path.open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(chunk)
    return "sha256:" + digest.hexdigest()
