"""One module per DVC stage. Run from the repository root: `python -m stages.<name>`."""
