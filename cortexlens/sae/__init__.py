"""Sparse autoencoders and transcoders: architectures, trainer, metrics, attention and circuit analyses."""
