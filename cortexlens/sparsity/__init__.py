"""Activation sparsity of MLP neurons: active fractions, CETT, PPL-p% sparsity, top-k enforcement.

    activity.py   active fractions per token (ReLU: nonzero; others: |a| > threshold), distributions
    cett.py       contributions, CETT(eps), the eps search for a target CETT
    intervene.py  CETT truncation and top-k inside the forward pass; loss or representation change
    measure.py    the per-layer and per-model measurements the sparsity stage writes
    plugin.py     params section, SQL view, checks
"""
