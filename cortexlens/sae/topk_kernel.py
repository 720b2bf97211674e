"""TopK encode-decode whose backward touches only the n*k chosen (row, latent) pairs.

    pre   = x @ W_enc + b_enc                      # [n, d_sae]   dense: every latent competes
    i, v  = topk(pre, k) per row                   # [n, k]
    a     = relu(v)                                # [n, k]
    y     = sum_j a_j W_dec[i_j]                   # [n, d_out]

Autograd through `pre.topk` materialises a dense [n, d_sae] gradient of pre, so the encoder's weight
gradient costs a second dense matmul (x^T @ grad_pre) although only k entries per row are nonzero.
Here the chosen pairs form a CSR matrix S [n, d_sae] with k entries per row, and every gradient is a
sparse product (torch.sparse, MKL on CPU):

    grad a     = (grad_y @ W_dec^T) sampled at S's pattern      # sampled_addmm, n*k*d_out
    grad pre   = grad a * (a > 0)
    grad W_dec = S(a)^T @ grad_y                                # [d_sae, d_out]
    grad W_enc = (S(grad pre)^T @ x)^T                          # [d_in, d_sae]
    grad b_enc = column sums of S(grad pre)

On one CPU thread at d_in 384, d_sae 3072, k 32, n 1024 the backward took about 9 ms in the torch
profiler where autograd's took about 28 ms (2026-12-02; bench/sae.py measures the whole trainer); tests/unit/test_topk_kernel.py
checks every gradient equals autograd's through the dense path. `SparseCoder.sparse_topk` uses it on
CPU; on CUDA it keeps autograd, whose bf16 autocast the sparse kernels do not support.
"""

from __future__ import annotations

import warnings

import torch

warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")


def _pattern(idx: torch.Tensor, values: torch.Tensor, d_sae: int) -> torch.Tensor:
    """CSR [n, d_sae] with row r holding values[r] at columns idx[r] (sorted, distinct)."""
    n, k = idx.shape
    crow = torch.arange(0, n * k + 1, k, device=idx.device)
    return torch.sparse_csr_tensor(crow, idx.reshape(-1), values.reshape(-1), (n, d_sae),
                                   check_invariants=False)


def _transpose_plan(idx: torch.Tensor, d_sae: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(crow [d_sae+1], rows [n*k], order [n*k]): S^T as CSR [d_sae, n] is
    sparse_csr_tensor(crow, rows, values.flatten()[order]). One stable argsort serves both transposed
    products (torch would convert each S.t() on its own)."""
    flat = idx.reshape(-1)
    order = torch.argsort(flat, stable=True)  # a latent's rows stay increasing: sorted CSR columns
    crow = torch.zeros(d_sae + 1, dtype=torch.long, device=idx.device)
    crow[1:] = torch.bincount(flat, minlength=d_sae).cumsum(0)
    return crow, torch.div(order, idx.shape[1], rounding_mode="floor"), order


class TopKCoding(torch.autograd.Function):
    """(x [n, d_in], W_enc [d_in, d_sae], b_enc [d_sae], W_dec [d_sae, d_out], k) ->
    (y [n, d_out] without b_dec, idx [n, k] sorted per row, pre [n, d_sae] detached)."""

    @staticmethod
    def forward(ctx, x, W_enc, b_enc, W_dec, k: int):
        pre = torch.mm(x, W_enc).add_(b_enc)  # [n, d_sae]; addmm would first copy the broadcast bias
        top = pre.topk(k, dim=-1, sorted=False)
        idx, order = top.indices.sort(dim=-1)  # CSR wants each row's columns sorted
        acts = top.values.gather(-1, order).relu_()  # [n, k]
        y = _pattern(idx, acts, W_dec.shape[0]) @ W_dec  # [n, d_out]
        ctx.save_for_backward(x, W_enc, W_dec, idx, acts)
        ctx.mark_non_differentiable(idx, pre)
        return y, idx, pre

    @staticmethod
    def backward(ctx, grad_y, _grad_idx, _grad_pre):
        x, W_enc, W_dec, idx, acts = ctx.saved_tensors
        d_sae = W_dec.shape[0]
        grad_y = grad_y.contiguous()
        shape = _pattern(idx, torch.zeros_like(acts), d_sae)
        grad_acts = torch.sparse.sampled_addmm(shape, grad_y, W_dec.t(), beta=0.0).values()  # [n*k]
        grad_pre = grad_acts.view_as(acts) * (acts > 0)  # [n, k]
        crow, rows, order = _transpose_plan(idx, d_sae)
        n = len(idx)

        def transposed(values: torch.Tensor) -> torch.Tensor:  # S(values)^T, CSR [d_sae, n]
            return torch.sparse_csr_tensor(crow, rows, values.reshape(-1)[order], (d_sae, n), check_invariants=False)

        grad_x = grad_W_enc = grad_b_enc = grad_W_dec = None
        if ctx.needs_input_grad[0]:
            grad_x = _pattern(idx, grad_pre, d_sae) @ W_enc.t()
        if ctx.needs_input_grad[1]:
            grad_W_enc = (transposed(grad_pre) @ x).t().contiguous()  # [d_in, d_sae]
        if ctx.needs_input_grad[2]:
            grad_b_enc = torch.zeros(d_sae, dtype=grad_pre.dtype, device=grad_pre.device).index_add_(
                0, idx.reshape(-1), grad_pre.reshape(-1))
        if ctx.needs_input_grad[3]:
            grad_W_dec = transposed(acts) @ grad_y  # [d_sae, d_out]
        return grad_x, grad_W_enc, grad_b_enc, grad_W_dec, None
