"""Runs under .venv-saelens (SAELens 6 and transformer-lens 3): the other side of the interchange tests.

    python tests/saelens_side.py encode <folder> <in.npy> <out.npz>   # SAE.load_from_disk, encode, decode
    python tests/saelens_side.py save <arch> <folder> <in.npy> <out.npz>   # a SAELens SAE, saved, its outputs
"""

from __future__ import annotations

import sys

import numpy as np
import torch


def encode(folder: str, x_path: str, out: str) -> None:
    from sae_lens import SAE

    sae = SAE.load_from_disk(folder, device="cpu")
    x = torch.from_numpy(np.load(x_path))
    with torch.no_grad():
        f = sae.encode(x)
        np.savez(out, f=f.numpy(), y=sae.decode(f).numpy(), arch=type(sae).__name__)


def save(arch: str, folder: str, x_path: str, out: str) -> None:
    from sae_lens import SAE
    from sae_lens.saes.sae import SAEMetadata

    d_in, d_sae = 16, 48
    cfg = {"architecture": arch, "d_in": d_in, "d_sae": d_sae, "dtype": "float32", "device": "cpu",
           "apply_b_dec_to_input": True, "metadata": SAEMetadata(hook_name="blocks.1.hook_resid_post",
                                                                model_name="toy").__dict__}
    if arch == "topk":
        cfg["k"] = 5
    sae = SAE.from_dict(cfg)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in sae.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
        if arch == "jumprelu":
            sae.threshold.copy_(torch.rand(d_sae, generator=g) * 0.5)
    sae.save_model(folder)
    encode(folder, x_path, out)


if __name__ == "__main__":
    {"encode": encode, "save": save}[sys.argv[1]](*sys.argv[2:])
