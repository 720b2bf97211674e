"""Training a sparse coder from batches of (x, y) rows, with exact resume.

`batches(epoch, start_batch)` yields numpy pairs x [n, d_in], y [n, d_out] (an SAE passes y = x), the
same ones for the same arguments (the store's ShufflingLoader does this), so a run killed at any point
and restarted from its last checkpoint sees exactly the batches it would have seen: with the model,
the Adam state, the step, the dead-latent counters and BatchTopK's threshold restored, it ends with
bitwise the same weights as a run never interrupted (CPU, same thread count).

* Normalisation: x and y are scaled by c = sqrt(d / E||v||^2), measured on the first batches, so one
  learning rate and one penalty fit every model; `fold_normalisation` moves c into the weights at the
  end, so the saved coder reads and writes raw activations (its latents are unchanged).
* Dead latents: AuxK (Gao et al. 2024) for every architecture: latents silent for `dead_tokens`
  training tokens reconstruct the residual y - y_hat with their own top `aux_k`, weighted `aux_alpha`.
  For relu and jumprelu this is our choice over resampling: it needs no schedule and leaves the
  checkpointed state small, and a silent latent gets gradient the same way in every architecture.
* TopK's decoder is applied sparsely (only the k rows each token uses), its decoder rows kept unit norm.
* float32 on CPU; bfloat16 autocast for the forward pass when on CUDA.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from cortexlens.sae.metrics import fvu as batch_fvu
from cortexlens.sae.model import CoderConfig, SparseCoder
from cortexlens.store.atomic import commit, temporary_path

Batches = Callable[[int, int], Iterator[tuple[np.ndarray, np.ndarray]]]
CHECKPOINT = "checkpoint.safetensors"


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 1000
    lr: float = 1e-3
    decay_fraction: float = 0.2  # the lr falls linearly to 0 over the last 20% of steps
    seed: int = 0
    aux_k: int = 256  # AuxK: latents a dead set reconstructs the residual with
    aux_alpha: float = 1 / 32  # Gao et al.'s weight
    dead_tokens: int = 50_000  # silent this many training tokens -> dead (for AuxK)
    norm_batches: int = 4  # batches that measure the normalisation constants
    checkpoint_every: int = 200  # steps; 0: never
    log_every: int = 25


@dataclass
class TrainState:
    step: int
    scale_in: float
    scale_out: float
    since_fired: torch.Tensor  # [d_sae] training tokens since each latent last fired


def lr_at(cfg: TrainConfig, step: int) -> float:
    start = int(cfg.steps * (1 - cfg.decay_fraction))
    if step < start:
        return cfg.lr
    return cfg.lr * max(0.0, (cfg.steps - step) / max(1, cfg.steps - start))


def _scales(batches: Batches, n: int) -> tuple[float, float, np.ndarray]:
    """(c_in, c_out, mean of y): c = sqrt(d / mean ||v||^2) over the first n batches of epoch 0."""
    sx = sy = 0.0
    rows, ysum = 0, None
    for i, (x, y) in enumerate(batches(0, 0)):
        if i >= n:
            break
        sx += float((x.astype(np.float64) ** 2).sum())
        sy += float((y.astype(np.float64) ** 2).sum())
        ysum = y.sum(0, dtype=np.float64) if ysum is None else ysum + y.sum(0, dtype=np.float64)
        rows += len(x)
    if rows == 0:
        raise ValueError("no training rows")
    return math.sqrt(x.shape[1] * rows / sx), math.sqrt(y.shape[1] * rows / sy), ysum / rows


def _step_loss(model: SparseCoder, state: TrainState, tc: TrainConfig, x: torch.Tensor, y: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss, y_hat [n, d_out], fired [d_sae] bool) for one batch (normalised units)."""
    if model.cfg.arch == "topk":
        pre, idx, y_hat = model.sparse_topk(x)  # on CPU pre comes back detached (AuxK recomputes)
        fired = torch.zeros(model.cfg.d_sae, dtype=torch.bool, device=x.device)
        fired[idx.flatten()] = True
        penalty = pre.new_zeros(())
    else:
        pre = model.pre(x)
        f = model.activate(pre, training=True)
        y_hat = model.decode(f, x)
        fired = (f != 0).any(0)
        penalty = model.penalty(f, pre)
    err = y - y_hat
    mse = (err ** 2).sum(-1).mean()
    loss = mse + penalty
    dead = state.since_fired >= tc.dead_tokens
    if dead.any():
        loss = loss + tc.aux_alpha * _aux_loss(model, x, pre, dead.nonzero().squeeze(1).to(x.device), tc.aux_k,
                                               err.detach())
    return loss, y_hat, fired


def _aux_loss(model: SparseCoder, x: torch.Tensor, pre: torch.Tensor, dead: torch.Tensor, aux_k: int,
              e: torch.Tensor) -> torch.Tensor:
    """AuxK: the dead latents' own top aux_k reconstruct the residual e [n, d_out]; normalised by ||e||^2.

    Only the dead columns of pre [n, d_sae] take part (recomputed with gradient when `pre` came back
    detached from the sparse TopK kernel), so its cost scales with the number of dead latents. The top
    aux_k are decoded densely ([n, n_dead] @ W_dec[dead]) unless they are a small fraction of the dead
    set: at 256 of ~900 dead latents three dense [n, 900] products are cheaper than gathering and
    scattering 256 decoder rows per token (embedding_bag's backward materialises n * aux_k rows)."""
    pre_dead = pre[:, dead] if pre.requires_grad else torch.addmm(model.b_enc[dead], x, model.W_enc[:, dead])
    if len(dead) > aux_k:
        top = pre_dead.topk(aux_k, dim=-1, sorted=False)
        if 8 * aux_k < len(dead):
            e_hat = torch.nn.functional.embedding_bag(dead[top.indices], model.W_dec,
                                                      per_sample_weights=top.values.relu(), mode="sum")  # [n, d_out]
        else:
            acts = torch.zeros_like(pre_dead).scatter(-1, top.indices, top.values.relu())  # [n, n_dead]
            e_hat = acts @ model.W_dec[dead]
    else:  # the top aux_k of at most aux_k latents: all of them
        e_hat = pre_dead.relu() @ model.W_dec[dead]
    return ((e - e_hat) ** 2).sum(-1).mean() / (e ** 2).sum(-1).mean().clamp_min(1e-12)


def save_checkpoint(path: Path, model: SparseCoder, opt: torch.optim.Optimizer, state: TrainState) -> None:
    tensors = {f"model.{k}": v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    tensors["since_fired"] = state.since_fired.clone()
    opt_state = opt.state_dict()
    for i, s in opt_state["state"].items():
        for name, value in s.items():
            tensors[f"opt.{i}.{name}"] = value.detach().clone().reshape(value.shape).contiguous()
    meta = {"step": str(state.step), "scale_in": repr(state.scale_in), "scale_out": repr(state.scale_out),
            "param_groups": json.dumps(opt_state["param_groups"])}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    save_file(tensors, str(tmp), metadata=meta)
    commit(tmp, path)


def load_checkpoint(path: Path, model: SparseCoder, opt: torch.optim.Optimizer) -> TrainState:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as fh:
        meta = fh.metadata()
    tensors = load_file(str(path))
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("opt."):
            _, i, name = key.split(".", 2)
            state.setdefault(int(i), {})[name] = value
    opt.load_state_dict({"state": state, "param_groups": json.loads(meta["param_groups"])})
    return TrainState(int(meta["step"]), float(meta["scale_in"]), float(meta["scale_out"]), tensors["since_fired"])


def train(cfg: CoderConfig, tc: TrainConfig, batches: Batches, batches_per_epoch: int,
          checkpoint: Path | None = None, progress: bool = False, device: str = "cpu") -> tuple[SparseCoder, dict]:
    """Train from `batches`; resume from `checkpoint` when it exists. Returns the coder (normalisation
    folded in: it maps raw x to raw y) and a summary (steps, tokens, resumed_from)."""
    from tqdm.auto import tqdm

    torch.manual_seed(tc.seed)
    model = SparseCoder(cfg, torch.Generator().manual_seed(tc.seed)).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=tc.lr, betas=(0.9, 0.999), fused=True)  # one kernel: 4x faster on CPU
    resumed = 0
    if checkpoint is not None and checkpoint.is_file():
        state = load_checkpoint(checkpoint, model, opt)
        resumed = state.step
    else:
        c_in, c_out, y_mean = _scales(batches, tc.norm_batches)
        with torch.no_grad():
            model.b_dec.copy_(torch.from_numpy(y_mean * c_out).float())
        state = TrainState(0, c_in, c_out, torch.zeros(cfg.d_sae, dtype=torch.long))
    use_amp = device.startswith("cuda")
    bar = tqdm(total=tc.steps, initial=state.step, disable=not progress, desc=f"{cfg.arch} {cfg.d_sae}", leave=False)
    tokens = 0
    while state.step < tc.steps:
        epoch, start = divmod(state.step, batches_per_epoch)
        for xb, yb in batches(epoch, start):
            x = torch.from_numpy(xb).to(device) * state.scale_in  # [n, d_in]
            y = x if yb is xb else torch.from_numpy(yb).to(device) * state.scale_out  # [n, d_out]
            for group in opt.param_groups:
                group["lr"] = lr_at(tc, state.step)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_amp):
                loss, y_hat, fired = _step_loss(model, state, tc, x, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if cfg.arch in ("topk", "batchtopk", "jumprelu"):
                model.normalise_decoder()
            state.since_fired = torch.where(fired.cpu(), 0, state.since_fired + len(x))
            state.step += 1
            tokens += len(x)
            bar.update(1)
            if progress and state.step % tc.log_every == 0:
                with torch.no_grad():
                    bar.set_postfix(L0=f"{float((model.encode(x[:256]) != 0).sum(-1).float().mean()):.1f}",
                                    FVU=f"{batch_fvu(y, y_hat.float()):.3f}")
            if checkpoint is not None and tc.checkpoint_every and state.step % tc.checkpoint_every == 0:
                save_checkpoint(checkpoint, model, opt, state)
            if state.step >= tc.steps:
                break
    bar.close()
    fold_normalisation(model, state.scale_in, state.scale_out)
    return model.cpu(), {"steps": state.step, "tokens": tokens, "resumed_from": resumed,
                         "scale_in": state.scale_in, "scale_out": state.scale_out, **asdict(tc)}


@torch.no_grad()
def fold_normalisation(model: SparseCoder, c_in: float, c_out: float) -> None:
    """A coder trained on (c_in x, c_out y) -> the same latents from raw x, predicting raw y."""
    model.W_enc.mul_(c_in)
    model.W_dec.div_(c_out)
    model.b_dec.div_(c_out)
    if model.W_skip is not None:
        model.W_skip.mul_(c_in / c_out)


@torch.no_grad()
def evaluate(model: SparseCoder, batches: Iterator[tuple[np.ndarray, np.ndarray]]):
    """The pinned metrics (cortexlens.sae.metrics) over held-out (x, y) batches."""
    from cortexlens.sae.metrics import MetricAccumulator

    acc = MetricAccumulator(model.cfg.d_sae)
    for xb, yb in batches:
        x = torch.from_numpy(np.ascontiguousarray(xb))
        y = x if yb is xb else torch.from_numpy(np.ascontiguousarray(yb))
        f = model.encode(x)
        acc.update(y, model.decode(f, x), f)
    return acc.result()
