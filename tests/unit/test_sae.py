"""Sparse coders: the pinned metrics on hand-computed examples, each architecture's activation, the
normalisation fold, exact resume, and the planted-dictionary known-answer test."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cortexlens.sae.metrics import MetricAccumulator, fvu, loss_recovered
from cortexlens.sae.model import CoderConfig, SparseCoder
from cortexlens.sae.planted import planted_batch, planted_dictionary, recovered
from cortexlens.sae.train import TrainConfig, evaluate, fold_normalisation, train


def test_metrics_on_a_hand_computed_example():
    y = torch.tensor([[0.0, 0.0], [2.0, 0.0], [4.0, 0.0]])
    y_hat = torch.tensor([[0.0, 0.0], [2.0, 1.0], [4.0, 0.0]])
    f = torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [1.0, 0.0, 0.0]])
    acc = MetricAccumulator(3)
    acc.update(y[:2], y_hat[:2], f[:2])  # in two batches: the sums, not per-batch ratios
    acc.update(y[2:], y_hat[2:], f[2:])
    m = acc.result()
    # squared error 1; mean (2, 0); sum ||y - mean||^2 = 4 + 0 + 4
    assert m.fvu == pytest.approx(1 / 8) and m.explained_variance == pytest.approx(7 / 8)
    assert fvu(y, y_hat) == pytest.approx(1 / 8)
    assert m.l0 == pytest.approx(1.0)
    assert m.dead_frac == pytest.approx(1 / 3)  # latent 2 never fires
    assert m.dense_frac == pytest.approx(2 / 3)  # latents 0 (2 of 3 tokens) and 1 (1 of 3) fire on > 10%
    assert loss_recovered(ce_clean=2.0, ce_zero=4.0, ce_spliced=2.5) == pytest.approx(0.75)


def _coder(arch: str, **kw) -> SparseCoder:
    coder = SparseCoder(CoderConfig(arch, 2, 3, **kw))
    with torch.no_grad():
        coder.W_enc.copy_(torch.eye(2, 3))
        coder.b_enc.copy_(torch.tensor([0.0, 0.0, -1.0]))
    return coder


def test_each_activation_on_a_hand_example():
    x = torch.tensor([[3.0, 0.5], [-1.0, 2.0]])  # pre = [[3, .5, -1], [-1, 2, -1]]
    torch.testing.assert_close(_coder("relu").encode(x), torch.tensor([[3.0, 0.5, 0.0], [0.0, 2.0, 0.0]]))
    torch.testing.assert_close(_coder("topk", k=1).encode(x), torch.tensor([[3.0, 0, 0], [0, 2.0, 0]]))
    jump = _coder("jumprelu", theta_init=1.0)
    torch.testing.assert_close(jump.encode(x), torch.tensor([[3.0, 0, 0], [0, 2.0, 0]]))
    batch = _coder("batchtopk", k=1)
    f = batch.activate(batch.pre(x), training=True)  # the 2 largest of the whole batch: 3 and 2
    torch.testing.assert_close(f, torch.tensor([[3.0, 0, 0], [0, 2.0, 0]]))
    assert float(batch.threshold) == pytest.approx(2.0)  # the smallest kept: inference threshold
    torch.testing.assert_close(batch.encode(x), torch.tensor([[3.0, 0, 0], [0, 0, 0]]))  # 2 > 2 is false


def test_relu_penalty_is_weighted_by_decoder_norms():
    coder = _coder("relu", l1=0.5)
    with torch.no_grad():
        coder.W_dec.copy_(torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 0.0]]))
    f = torch.tensor([[1.0, 2.0, 0.0]])
    assert float(coder.penalty(f, f).detach()) == pytest.approx(0.5 * (1 * 2 + 2 * 1))


def test_sparse_topk_decoding_equals_dense():
    coder = SparseCoder(CoderConfig("topk", 8, 32, k=4), torch.Generator().manual_seed(0))
    x = torch.randn(10, 8)
    _, _, y = coder.sparse_topk(x)
    torch.testing.assert_close(y, coder(x))


def test_folding_the_normalisation_keeps_latents_and_rescales_outputs():
    coder = SparseCoder(CoderConfig("relu", 4, 6, d_out=3, skip=True, transcoder=True),
                        torch.Generator().manual_seed(0))
    with torch.no_grad():
        coder.W_skip.normal_()
    x = torch.randn(5, 4)
    f_norm, y_norm = coder.encode(2.0 * x), coder(2.0 * x)
    fold_normalisation(coder, 2.0, 4.0)
    torch.testing.assert_close(coder.encode(x), f_norm)
    torch.testing.assert_close(coder(x), y_norm / 4.0)


def _stream(atoms, rows=128, per_epoch=8):
    def batches(epoch, start):
        for b in range(start, per_epoch):
            x = planted_batch(atoms, rows, np.random.default_rng((0, epoch, b)))
            yield x, x
    return batches


class _Killed(Exception):
    pass


def _dies_after(batches, n):
    seen = [0]

    def wrapped(epoch, start):
        for item in batches(epoch, start):
            if seen[0] == n:
                raise _Killed
            seen[0] += 1
            yield item
    return wrapped


@pytest.mark.parametrize("arch", ["topk", "batchtopk", "jumprelu", "relu"])
def test_a_resumed_run_ends_with_the_same_weights(tmp_path, arch):
    atoms = planted_dictionary(64, 16)
    cfg = CoderConfig(arch, 16, 64, k=3 if "topk" in arch else None)
    tc = TrainConfig(steps=30, checkpoint_every=7, dead_tokens=256, aux_k=8)
    whole, _ = train(cfg, tc, _stream(atoms), 8)
    ckpt = tmp_path / "ckpt.safetensors"
    with pytest.raises(_Killed):
        train(cfg, tc, _dies_after(_stream(atoms), 4 + 17), 8, checkpoint=ckpt)  # 4 scale batches + 17 steps
    resumed, summary = train(cfg, tc, _stream(atoms), 8, checkpoint=ckpt)
    assert summary["resumed_from"] == 14
    for name, value in whole.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[name]), name


@pytest.mark.slow
@pytest.mark.parametrize(("arch", "steps", "lr"), [("topk", 1500, 2e-3), ("batchtopk", 3000, 4e-3),
                                                    ("jumprelu", 3000, 5e-3)])
def test_planted_dictionary_is_recovered(arch, steps, lr):
    """512 unit atoms in 64 dims, 5 active per row, noise 0.01: >= 90% of atoms found at cosine >= 0.9."""
    torch.set_num_threads(1)
    atoms = planted_dictionary()
    data = planted_batch(atoms, 65536, np.random.default_rng(1))

    def batches(epoch, start, B=512):
        perm = np.random.default_rng((0, epoch)).permutation(len(data))
        for b in range(start, len(data) // B):
            x = data[perm[b * B:(b + 1) * B]]
            yield x, x

    cfg = CoderConfig(arch, 64, 1024, k=5 if "topk" in arch else None)
    model, _ = train(cfg, TrainConfig(steps=steps, lr=lr, aux_k=64, dead_tokens=20000, checkpoint_every=0),
                     batches, len(data) // 512)
    share = recovered(atoms, model.W_dec.detach().numpy())
    held_out = planted_batch(atoms, 2048, np.random.default_rng(99))
    m = evaluate(model, iter([(held_out, held_out)]))
    print(f"{arch}: {share:.1%} of atoms recovered at cosine >= 0.9; held-out FVU {m.fvu:.3f}, L0 {m.l0:.1f}")
    assert share >= 0.9


KILLABLE = """
import sys, numpy as np, torch
from pathlib import Path
from safetensors.torch import save_file
from cortexlens.sae.model import CoderConfig
from cortexlens.sae.planted import planted_batches, planted_dictionary
from cortexlens.sae.train import TrainConfig, train
torch.set_num_threads(1)
ckpt, out = sys.argv[1], sys.argv[2]
atoms = planted_dictionary(256, 32)
model, _ = train(CoderConfig("topk", 32, 256, k=4), TrainConfig(steps=400, checkpoint_every=25),
                 planted_batches(atoms, 256, 50), 50, checkpoint=Path(ckpt) if ckpt != "-" else None)
save_file({k: v.contiguous() for k, v in model.state_dict().items()}, out)
"""


@pytest.mark.slow
def test_kill_9_during_training_then_rerun_ends_with_the_uninterrupted_weights(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    from safetensors.torch import load_file

    script = tmp_path / "killable.py"
    script.write_text(KILLABLE)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, str(script), "-", str(tmp_path / "whole.safetensors")], check=True, env=env)
    ckpt = tmp_path / "ckpt.safetensors"
    proc = subprocess.Popen([sys.executable, str(script), str(ckpt), str(tmp_path / "never.safetensors")], env=env)
    deadline = time.time() + 120
    while not ckpt.exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # past the first checkpoint, mid-training
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert ckpt.exists() and not (tmp_path / "never.safetensors").exists()
    subprocess.run([sys.executable, str(script), str(ckpt), str(tmp_path / "resumed.safetensors")], check=True, env=env)
    whole, resumed = load_file(str(tmp_path / "whole.safetensors")), load_file(str(tmp_path / "resumed.safetensors"))
    assert set(whole) == set(resumed)
    for name in whole:
        assert torch.equal(whole[name], resumed[name]), name


def test_head_shares_and_dominance_on_a_hand_example():
    from cortexlens.sae.analysis import dominated_fraction, head_shares

    # 2 heads x d_head 2: latent 0 writes only head 1 (norm 5), latent 1 both heads equally
    W_dec = torch.tensor([[0.0, 0.0, 3.0, 4.0], [1.0, 0.0, 0.0, 1.0]])
    shares = head_shares(W_dec, 2)
    torch.testing.assert_close(shares, torch.tensor([[0.0, 1.0], [0.5, 0.5]]))
    assert dominated_fraction(shares, 0.6) == pytest.approx(0.5)


class _Coder:
    """The SAE interface the circuit functions use: W_enc, W_dec, encode."""

    def __init__(self, W_enc, W_dec):
        self.W_enc, self.W_dec = W_enc, W_dec

    def encode(self, x):
        return torch.relu(x @ self.W_enc)


def test_connections_and_attributions_on_a_hand_example():
    from cortexlens.sae.analysis import attributions, connections, top_edges

    up = _Coder(torch.eye(2), torch.tensor([[1.0, 0.0], [0.0, 2.0]]))  # latent i writes e_i (x2 for latent 1)
    down = _Coder(torch.tensor([[1.0, 0.0], [1.0, -1.0]]), torch.eye(2))  # reads x0 + x1, and -x1
    conn = connections(up, down)  # W_dec^L @ W_enc^L'
    torch.testing.assert_close(conn, torch.tensor([[1.0, 0.0], [2.0, -2.0]]))
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # token 0 fires up-latent 0, token 1 up-latent 1
    # down-latent 0 fires on both tokens, down-latent 1 on none (relu(-x1) = 0)
    torch.testing.assert_close(attributions(up, down, x, x), torch.tensor([[1.0, 0.0], [2.0, 0.0]]))
    src, tgt, score = top_edges(conn, 1)
    assert (src.tolist(), tgt.tolist(), score.tolist()) == ([1, 1], [0, 1], [2.0, -2.0])


def test_latents_of_a_planted_head_are_attributed_to_that_head():
    """attn_z of 4 heads x d_head 8: 48 atoms spread over every head, 16 that only head 2 writes (the
    "induction" atoms, on a marked half of the rows). The latents most active on the marked rows must
    come from head 2 by their decoder-norm shares (what sae_heads stores and query 55 averages)."""
    from cortexlens.sae.analysis import head_shares

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    n_heads, d_head = 4, 8
    dense = planted_dictionary(48, n_heads * d_head, seed=1)
    local = np.zeros((16, n_heads * d_head), np.float32)
    local[:, 2 * d_head:3 * d_head] = planted_dictionary(16, d_head, seed=2)
    rows = 8192
    marked = rng.random(rows) < 0.5
    x = planted_batch(dense, rows, rng, active=2)
    x[marked] += 2.0 * local[rng.integers(0, 16, int(marked.sum()))]

    def batches(epoch, start, B=256):
        perm = np.random.default_rng((0, epoch)).permutation(rows)
        for b in range(start, rows // B):
            yield x[perm[b * B:(b + 1) * B]], x[perm[b * B:(b + 1) * B]]

    model, _ = train(CoderConfig("topk", n_heads * d_head, 128, k=3),
                     TrainConfig(steps=600, lr=4e-3, aux_k=16, dead_tokens=4096, checkpoint_every=0),
                     batches, rows // 256)
    with torch.no_grad():
        f = model.encode(torch.from_numpy(x[marked]))  # [marked rows, d_sae]
        shares = head_shares(model.W_dec, n_heads)  # [d_sae, n_heads]
    top = f.sum(0).topk(10).indices
    mean_share = shares[top].mean(0)
    print("head shares of the 10 latents most active on marked rows:", mean_share.numpy().round(3))
    assert int(mean_share.argmax()) == 2 and float(mean_share[2]) > 0.8
