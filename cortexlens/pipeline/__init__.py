"""The pipeline as data: dvc.yaml's stages, their fingerprints and graph, and the stage template.

    dvcfile.py      read dvc.yaml (interpolation from params, multi-key matrix stages) into StageSpecs
    fingerprint.py  what a stage's result depends on: its deps' content and its params' values
    graph.py        which stage needs which (deps inside outs), in a runnable order
    stage.py        the template every `stages/<name>.py` is written on

Both `dvc repro` (through the stage modules) and the Prefect flow (flows/) use these, so the two
paths read one declaration of each stage.
"""
