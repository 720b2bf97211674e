"""Sparse coders: SAEs (reconstruct x) and transcoders (read x at one hook point, predict y at another).

    pre   = x @ W_enc + b_enc                          # [n, d_sae]
    f     = act(pre)                                   # [n, d_sae], sparse
    y_hat = f @ W_dec + b_dec (+ x @ W_skip)           # [n, d_out]; an SAE has y = x, d_out = d_in

Activations (`arch`):
* relu: f = relu(pre); loss MSE + l1 * sum_i f_i ||W_dec[i]|| (L1 weighted by decoder norms, as in
  Anthropic's April 2024 update, so shrinking f by growing W_dec does not pay).
* topk: the k largest pre per row, ReLU'd; every other latent 0.
* batchtopk: training keeps the n*k largest pre of the whole batch of n rows (Bussmann et al. 2024);
  inference uses a JumpReLU with one threshold for every latent, the running mean of the smallest kept
  activation, so a row's L0 varies around k. Saved as a JumpReLU.
* jumprelu: f = pre * H(pre - theta), theta = exp(log_theta) per latent; the threshold learns through a
  straight-through rectangle kernel of width `bandwidth` (Rajamanoharan et al. 2024); loss MSE + l0 * L0.

The input is not centred by b_dec (SAELens's `apply_b_dec_to_input = False`): x @ W_enc + b_enc spans
the same maps, and a transcoder's b_dec lives in the output space.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
from torch import nn

from cortexlens.sae.topk_kernel import TopKCoding

Arch = Literal["relu", "topk", "batchtopk", "jumprelu"]
ARCHS: tuple[str, ...] = ("relu", "topk", "batchtopk", "jumprelu")


@dataclass(frozen=True)
class CoderConfig:
    arch: Arch
    d_in: int
    d_sae: int
    d_out: int | None = None  # a transcoder's target width; None: an SAE (d_out = d_in)
    k: int | None = None  # topk, batchtopk
    l1: float = 1e-3  # relu: L1 coefficient (on MSE in normalised units)
    l0: float = 3.0  # jumprelu: L0 coefficient (per latent, against the summed squared error of a
    # normalised row, E||x||^2 = d_in: the planted-dictionary test recovers its atoms at 3)
    bandwidth: float = 0.5  # jumprelu: width of the straight-through rectangle kernel (normalised units)
    theta_init: float = 0.5  # jumprelu: initial threshold (normalised units)
    skip: bool = False  # transcoders: a linear skip x @ W_skip
    transcoder: bool = False

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ValueError(f"unknown architecture {self.arch!r} ({', '.join(ARCHS)})")
        if self.arch in ("topk", "batchtopk") and not (self.k and 0 < self.k <= self.d_sae):
            raise ValueError(f"{self.arch} needs k in 1..{self.d_sae}, got {self.k}")

    @property
    def out_width(self) -> int:
        return self.d_out or self.d_in

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _JumpHeaviside(torch.autograd.Function):
    """H(pre - theta) forward; d/dtheta through the rectangle kernel, no gradient to pre (as the paper)."""

    @staticmethod
    def forward(ctx, pre: torch.Tensor, theta: torch.Tensor, bandwidth: float) -> torch.Tensor:
        ctx.save_for_backward(pre, theta)
        ctx.bandwidth = bandwidth
        return (pre > theta).to(pre.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        pre, theta = ctx.saved_tensors
        eps = ctx.bandwidth
        kernel = ((pre - theta).abs() < eps / 2).to(pre.dtype) / eps  # [n, d_sae]
        return None, (-grad * kernel).sum(0), None


class _JumpReLU(torch.autograd.Function):
    """pre * H(pre - theta): gradient to pre where active, to theta through the kernel (-theta/eps)."""

    @staticmethod
    def forward(ctx, pre: torch.Tensor, theta: torch.Tensor, bandwidth: float) -> torch.Tensor:
        ctx.save_for_backward(pre, theta)
        ctx.bandwidth = bandwidth
        return pre * (pre > theta)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        pre, theta = ctx.saved_tensors
        eps = ctx.bandwidth
        active = (pre > theta).to(pre.dtype)
        kernel = ((pre - theta).abs() < eps / 2).to(pre.dtype) / eps
        return grad * active, (-theta * kernel * grad).sum(0), None


class SparseCoder(nn.Module):
    def __init__(self, cfg: CoderConfig, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        d_in, d_sae, d_out = cfg.d_in, cfg.d_sae, cfg.out_width
        W_dec = torch.randn(d_sae, d_out, generator=generator)
        W_dec = W_dec / W_dec.norm(dim=1, keepdim=True)  # unit rows
        self.W_dec = nn.Parameter(W_dec)  # [d_sae, d_out]
        W_enc = W_dec.T.clone() if d_in == d_out else torch.randn(d_in, d_sae, generator=generator) / d_in ** 0.5
        self.W_enc = nn.Parameter(W_enc.contiguous())  # [d_in, d_sae]
        self.b_enc = nn.Parameter(torch.zeros(d_sae))
        self.b_dec = nn.Parameter(torch.zeros(d_out))
        self.W_skip = nn.Parameter(torch.zeros(d_in, d_out)) if cfg.skip else None
        if cfg.arch == "jumprelu":
            self.log_theta = nn.Parameter(torch.full((d_sae,), float(torch.tensor(cfg.theta_init).log())))
        # batchtopk: the inference threshold (running mean of the smallest kept activation).
        self.register_buffer("threshold", torch.zeros(()))
        self.register_buffer("threshold_n", torch.zeros((), dtype=torch.long))

    # ---------------------------------------------------------------- forward
    def pre(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.W_enc + self.b_enc  # [n, d_sae]

    def activate(self, pre: torch.Tensor, training: bool = False) -> torch.Tensor:
        """pre [n, d_sae] -> f [n, d_sae]."""
        arch = self.cfg.arch
        if arch == "relu":
            return torch.relu(pre)
        if arch == "jumprelu":
            return _JumpReLU.apply(pre, self.log_theta.exp(), self.cfg.bandwidth)
        if arch == "topk":
            top = pre.topk(self.cfg.k, dim=-1, sorted=False)
            return torch.zeros_like(pre).scatter(-1, top.indices, top.values.relu())
        if training:  # batchtopk
            flat = pre.relu().flatten()
            top = flat.topk(min(self.cfg.k * pre.shape[0], flat.numel()), sorted=False)
            f = torch.zeros_like(flat).scatter(0, top.indices, top.values).view_as(pre)
            with torch.no_grad():
                positive = top.values[top.values > 0]
                if len(positive):
                    self.threshold_n += 1
                    self.threshold += (positive.min() - self.threshold) / self.threshold_n
            return f
        return pre * (pre > self.threshold)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """x [..., d_in] -> f [..., d_sae] (inference)."""
        return self.activate(self.pre(x))

    def decode(self, f: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        """f [..., d_sae] (and x for the skip) -> y_hat [..., d_out]."""
        y = f @ self.W_dec + self.b_dec
        if self.W_skip is not None:
            y = y + x @ self.W_skip
        return y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x), x)

    def sparse_topk(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """TopK's training path: (pre [n, d_sae], indices [n, k], y_hat [n, d_out]) decoding only the k
        rows of W_dec each token uses, so decoder cost and gradient scale with k, not d_sae. On CPU the
        backward too works on the chosen pairs only (cortexlens.sae.topk_kernel; pre comes back
        detached); on CUDA autograd runs through embedding_bag (the sparse kernels lack bf16 autocast)."""
        if x.device.type == "cpu":
            y, indices, pre = TopKCoding.apply(x, self.W_enc, self.b_enc, self.W_dec, self.cfg.k)
            y = y + self.b_dec
        else:
            pre = self.pre(x)
            top = pre.topk(self.cfg.k, dim=-1, sorted=False)
            indices = top.indices
            y = nn.functional.embedding_bag(indices, self.W_dec, per_sample_weights=top.values.relu(),
                                            mode="sum") + self.b_dec  # [n, d_out]
        if self.W_skip is not None:
            y = y + x @ self.W_skip
        return pre, indices, y

    def penalty(self, f: torch.Tensor, pre: torch.Tensor) -> torch.Tensor:
        """The sparsity term of the loss (0 for the TopK family, whose k is the constraint)."""
        if self.cfg.arch == "relu":
            return self.cfg.l1 * (f * self.W_dec.norm(dim=1)).sum(-1).mean()
        if self.cfg.arch == "jumprelu":
            return self.cfg.l0 * _JumpHeaviside.apply(pre, self.log_theta.exp(), self.cfg.bandwidth).sum(-1).mean()
        return pre.new_zeros(())

    @torch.no_grad()
    def normalise_decoder(self) -> None:
        """Unit decoder rows (TopK family): keeps latent magnitudes comparable and the aux loss fair."""
        self.W_dec /= self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-8)

    def inference_threshold(self) -> torch.Tensor | None:
        """The per-latent JumpReLU threshold the saved SAE uses ([d_sae]), or None (relu, topk)."""
        if self.cfg.arch == "jumprelu":
            return self.log_theta.exp().detach().clone()
        if self.cfg.arch == "batchtopk":
            return self.threshold.expand(self.cfg.d_sae).clone()
        return None
