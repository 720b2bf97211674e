"""The training fast paths against plain autograd: TopK's sparse backward (cortexlens.sae.topk_kernel)
and AuxK over the dead columns only (cortexlens.sae.train._aux_loss), in value and in every gradient."""

from __future__ import annotations

import pytest
import torch

from cortexlens.sae.model import CoderConfig, SparseCoder
from cortexlens.sae.topk_kernel import TopKCoding
from cortexlens.sae.train import _aux_loss


def _grads(coder: SparseCoder, x: torch.Tensor, loss) -> list[torch.Tensor]:
    coder.zero_grad(set_to_none=True)
    x.grad = None
    loss().backward()
    return [t.grad.clone() for t in (x, coder.W_enc, coder.b_enc, coder.W_dec, coder.b_dec)]


@pytest.mark.parametrize("d_out", [None, 12])  # an SAE, and a transcoder's other output width
def test_sparse_topk_backward_equals_autograd_through_the_dense_path(d_out):
    g = torch.Generator().manual_seed(0)
    coder = SparseCoder(CoderConfig("topk", 16, 64, d_out=d_out, k=5), g)
    with torch.no_grad():
        coder.b_enc.normal_(-3.0, 1.0, generator=g)  # some chosen pre-activations negative: ReLU's zero gradient
    x = torch.randn(40, 16, generator=g, requires_grad=True)
    target = torch.randn(40, d_out or 16, generator=g)

    def dense():  # autograd through topk + scatter into the dense code
        return ((target - coder(x)) ** 2).sum()

    def sparse():
        y, idx, pre = TopKCoding.apply(x, coder.W_enc, coder.b_enc, coder.W_dec, 5)
        assert not pre.requires_grad and idx.shape == (40, 5)
        return ((target - (y + coder.b_dec)) ** 2).sum()

    with torch.no_grad():
        assert ((coder.pre(x).topk(5).values) < 0).any()
    for want, got in zip(_grads(coder, x, dense), _grads(coder, x, sparse)):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("n_dead", [3, 20, 60])  # all dead used; dense top-k; sparse top-k (8 * k < n_dead)
def test_aux_loss_over_dead_columns_equals_the_masked_reference(n_dead):
    g = torch.Generator().manual_seed(1)
    coder = SparseCoder(CoderConfig("topk", 8, 64, k=4), g)
    x = torch.randn(30, 8, generator=g)
    e = torch.randn(30, 8, generator=g)
    dead_mask = torch.zeros(64, dtype=torch.bool)
    dead_mask[torch.randperm(64, generator=g)[:n_dead]] = True
    aux_k = 5

    def reference():  # Gao et al.'s AuxK written out: mask the live latents, top aux_k, decode densely
        pre = coder.pre(x).masked_fill(~dead_mask, float("-inf"))
        top = pre.topk(min(aux_k, n_dead), dim=-1)
        acts = torch.zeros_like(pre).scatter(-1, top.indices, top.values.relu())
        return ((e - acts @ coder.W_dec) ** 2).sum(-1).mean() / (e ** 2).sum(-1).mean()

    dead = dead_mask.nonzero().squeeze(1)
    want = _param_grads(coder, reference)
    for detached in (True, False):  # the sparse kernel hands back a detached pre; the dense path does not
        def ours(detached: bool = detached) -> torch.Tensor:
            pre = coder.pre(x)
            return _aux_loss(coder, x, pre.detach() if detached else pre, dead, aux_k, e)

        for w, o in zip(want, _param_grads(coder, ours)):
            torch.testing.assert_close(o, w, rtol=1e-5, atol=1e-6)
        with torch.no_grad():
            assert float(ours()) == pytest.approx(float(reference()), rel=1e-5)


def _param_grads(coder: SparseCoder, loss) -> list[torch.Tensor]:
    coder.zero_grad(set_to_none=False)
    loss().backward()
    return [p.grad.clone() for p in (coder.W_enc, coder.b_enc, coder.W_dec)]
