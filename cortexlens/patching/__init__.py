"""Causal interventions: activation patching (denoising and noising, per position and per head),
attribution patching, causal tracing, and subspace patching with the interpretability-illusion check.

Light on purpose: `plugin.py` (the params section, the `patching` view, checks) is imported by
`cortexlens check` and `cortexlens sql`; the algorithms (torch) live in the other modules.
"""
