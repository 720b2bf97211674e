"""Brain alignment: encoding models of recorded (or simulated) responses from model features.

Algorithms on numpy/torch inputs: `ridge` (per-target ridge with inner CV), `encoding` (outer grouped CV,
permutation null), `ceiling` (split-half noise ceilings), `summary` (normalised scores, ROI medians,
p-values), `recordings` / `nifti` (inputs), `simulate` (simulated and planted subjects). The params
section and views are in `plugin.py`; the stage is `stages/brain.py`.
"""
