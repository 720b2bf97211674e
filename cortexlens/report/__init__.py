"""The study report: SQL files over the store, drawn into one self-contained HTML page.

    spec.py        query files and their comment headers (validated)
    runner.py      run them over the read-only SQL views
    figures.py     draw results with matplotlib (PNG)
    toy.py         the toy model's training metrics as a figure
    provenance.py  code commit, version, extraction manifests
    html.py        the page (base64 images, inline style, no script, no URL)
    files.py       atomic writes of index.html and the plot data CSVs
    build.py       all of the above, in order
"""

from cortexlens.report.build import Built, build_report

__all__ = ["Built", "build_report"]
