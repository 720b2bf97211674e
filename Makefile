# Two commands set everything up on a fresh machine with Python 3.11:
#   make demo   create .venv, install, run the default study with DVC, print where results are
#   make test   create .venv, install with dev extras, run the test suite
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SAELENS_VENV := .venv-saelens

# Telemetry off (also defaulted in cortexlens/_env.py); DVC's is off in .dvc/config.
export DO_NOT_TRACK := 1
export DVC_NO_ANALYTICS := 1
export MLFLOW_DISABLE_TELEMETRY := true
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export HF_HUB_DISABLE_TELEMETRY := 1
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: install browser demo test test-all bench lint constraints clean

$(STAMP): pyproject.toml constraints.txt constraints-saelens.txt
	$(PYTHON) -m venv $(VENV)
	# torch first and pinned: the local CPU wheel; an unpinned torch pulls gigabytes of CUDA packages.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	# SAELens in an overlay venv (constraints-saelens.txt says why): .venv's packages plus its own.
	$(PYTHON) -m venv $(SAELENS_VENV)
	$(VENV)/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])" \
		> $$($(SAELENS_VENV)/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")/zz_cortexlens_venv.pth
	$(SAELENS_VENV)/bin/pip install --quiet --no-deps -r constraints-saelens.txt
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/cortexlens check params.yaml
	$(BIN)/dvc repro
	@echo
	@echo "Done. Results (first, in each new shell: source .venv/bin/activate):"
	@echo "  activation store   data/store   (query it: cortexlens sql \"select model, hook, layer, count(*) from activations group by all order by all\")"
	@echo "  toy model          data/models/toy"
	@echo "  metrics            reports/metrics/   (dvc metrics show)"
	@echo "  report             $(CURDIR)/reports/index.html   (self-contained: open it in any browser, offline)"
	@echo "                     e.g. xdg-open reports/index.html, or python -m http.server -d reports 8000"
	@echo "  MLflow runs        mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlflow.db --port 5000"
	@echo "                     then http://127.0.0.1:5000 (experiment cortexlens-default; model cortexlens-default-toy@current)"
	$(BIN)/cortexlens sql "select model, count(*) as activation_rows, count(distinct doc_id) as documents from activations group by model order by model"
	@echo "Brain alignment: best layer per region of the simulated subject, trained vs random init (normalised score, p):"
	$(BIN)/cortexlens sql "select model, roi, init, arg_max(layer, r_normalized) as best_layer, round(max(r_normalized), 3) as score, round(arg_max(p_value, r_normalized), 4) as p from brain_layers where features = 'activations' group by all order by model, roi, init desc"

# HF_HUB_OFFLINE: tests use only local models and must never wait on the network.
# Test files run in parallel (pytest-xdist, one file per worker): much of the integration tests' time is
# spent waiting on subprocesses and servers, so two workers on two cores finish far sooner.
TEST_WORKERS ?= auto
# The report's browser test needs a system Chromium: installed from the system's packages when
# root or password-less sudo allows, else one line says how (scripts/ensure-chromium).
browser:
	@scripts/ensure-chromium

test: $(STAMP) browser
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(BIN)/pytest -m "not slow" -n $(TEST_WORKERS) --dist loadfile --durations=15

test-all: $(STAMP) browser
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python bench/extract.py
	$(BIN)/python bench/store_encoding.py
	$(BIN)/python bench/extract_memory.py
	$(BIN)/python bench/reader.py
	$(BIN)/python bench/brain.py
	$(BIN)/python bench/patch.py
	$(BIN)/python bench/sae.py

lint: $(STAMP)
	$(BIN)/ruff check cortexlens stages flows tests bench

constraints: $(STAMP)
	$(BIN)/pip freeze --exclude-editable | sed 's/+cpu$$//' > constraints.txt

clean:
	# reports/metrics/ and dvc.lock are in git (dvc exp show and dvc metrics diff compare them): kept.
	rm -rf $(VENV) $(SAELENS_VENV) data/store data/models reports/index.html reports/plots mlflow.db mlruns .prefect
