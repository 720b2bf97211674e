"""SAELens interchange: our folders load in SAELens 6 with the same encode and decode (1e-5), and
folders SAELens saves load in ours with the same outputs. SAELens runs in .venv-saelens (see
constraints-saelens.txt: it cannot share .venv with transformer-lens 4)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from cortexlens.features.sae import load_sae, save_sae
from cortexlens.sae.model import CoderConfig, SparseCoder

ROOT = Path(__file__).resolve().parents[2]
SAELENS_PYTHON = ROOT / ".venv-saelens" / "bin" / "python"


def _saelens(*args: str) -> None:
    if not SAELENS_PYTHON.is_file():
        pytest.fail(f"{SAELENS_PYTHON} is missing: `make install` builds it")
    subprocess.run([str(SAELENS_PYTHON), str(ROOT / "tests" / "saelens_side.py"), *args], check=True,
                   capture_output=True, text=True)


def _trained_like(arch: str) -> SparseCoder:
    coder = SparseCoder(CoderConfig(arch, 16, 48, k=5 if "topk" in arch else None),
                        torch.Generator().manual_seed(3))
    with torch.no_grad():
        coder.b_enc.normal_(0, 0.2)
        coder.b_dec.normal_(0, 0.2)
        if arch == "jumprelu":
            coder.log_theta.copy_(torch.rand(48).mul(0.5).add(0.05).log())
        if arch == "batchtopk":
            coder.threshold.fill_(0.3)
    return coder


@pytest.mark.parametrize("arch", ["relu", "topk", "batchtopk", "jumprelu"])
def test_our_folder_loads_in_saelens_with_equal_outputs(tmp_path, arch):
    coder = _trained_like(arch)
    folder = save_sae(coder, tmp_path / arch, "blocks.1.hook_resid_post", "toy", metadata={"fvu": 0.1})
    x = np.random.default_rng(0).standard_normal((64, 16)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    _saelens("encode", str(folder), str(tmp_path / "x.npy"), str(tmp_path / "out.npz"))
    theirs = np.load(tmp_path / "out.npz")
    with torch.no_grad():
        f = coder.encode(torch.from_numpy(x))
        ours = load_sae(folder, arch, "k")
        np.testing.assert_allclose(theirs["f"], f.numpy(), atol=1e-5)
        np.testing.assert_allclose(theirs["y"], coder.decode(f).numpy(), atol=1e-5)
        np.testing.assert_allclose(ours.encode(torch.from_numpy(x)).numpy(), f.numpy(), atol=1e-5)
    assert (f != 0).any() and str(theirs["arch"]) == {"relu": "StandardSAE", "topk": "TopKSAE"}.get(arch, "JumpReLUSAE")
    cfg = json.loads((folder / "cfg.json").read_text())
    assert cfg["metadata"]["hook_name"] == "blocks.1.hook_resid_post" and cfg["cortexlens"]["fvu"] == 0.1


@pytest.mark.parametrize("arch", ["standard", "topk", "jumprelu"])
def test_a_saelens_saved_sae_loads_in_ours_with_equal_outputs(tmp_path, arch):
    x = np.random.default_rng(1).standard_normal((64, 16)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    _saelens("save", arch, str(tmp_path / arch), str(tmp_path / "x.npy"), str(tmp_path / "out.npz"))
    theirs = np.load(tmp_path / "out.npz")
    sae = load_sae(tmp_path / arch, arch, "k")
    f = sae.encode(torch.from_numpy(x))
    assert (f != 0).any()
    np.testing.assert_allclose(f.numpy(), theirs["f"], atol=1e-5)
    np.testing.assert_allclose(sae.decode(f).numpy(), theirs["y"], atol=1e-5)
