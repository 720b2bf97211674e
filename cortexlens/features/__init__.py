"""Stimulus-level feature spaces from the store: pooled activations and SAE latents (`spaces`, `sae`)."""
