"""Model loading and named hook points for Hugging Face transformers (see hooked.HookedModel)."""
