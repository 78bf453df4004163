# Two-command quickstart: `make train` runs the main job, `make test` runs the tests.
# Both create ./.venv and install the project into it on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DATA ?=
CONFIG ?=
RUN_ARGS = $(if $(DATA),--data $(DATA)) $(if $(CONFIG),--config $(CONFIG))

MODEL ?= models:/fer2013-emotion@champion
PORT ?= 5001
# one worker: torch already uses every core per request, and each worker holds its own copy of the model;
# a request waits its turn rather than time out (docs/serving.md, BENCHMARKS.md "Serving under load")
SERVE_WORKERS ?= 1
SERVE_TIMEOUT ?= 120
DEMO_ARGS ?=
MLFLOW_UI_WORKERS ?= 1

.PHONY: setup demo train ingest test test-fast test-model lint mutation mlflow-ui serve benchmark schedule

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e ".[dev]"
	touch $@

setup: $(VENV)/.installed

# the demo page's extra (Gradio): not part of setup, so `make train` does not install it
$(VENV)/.demo-installed: $(VENV)/.installed
	$(PY) -m pip install -q -c constraints.txt -e ".[demo]"
	touch $@

# the champion and the contenders on a page at http://127.0.0.1:7860 (DEMO_ARGS: --host, --port, --model-name)
demo: $(VENV)/.demo-installed
	$(PY) run.py demo $(DEMO_ARGS)

train: setup
	$(PY) run.py --pipeline train_all $(RUN_ARGS)

ingest: setup
	$(PY) run.py --pipeline ingest $(RUN_ARGS)

schedule: setup
	$(PY) run.py --pipeline train_all --schedule $(RUN_ARGS)

# every tier: tests/unit (no MLflow, ZenML or subprocess; in a process of its own, where its guard holds), then
# tests/integration (real stores, subprocesses), tests/model (a trained model's behaviour: MODEL_URI=models:/NAME@ALIAS
# checks a registered one) and tests/e2e (whole pipelines, marked slow) in two pytest-xdist workers, a file each
test: setup $(VENV)/.demo-installed
	$(PY) -m pytest -q tests/unit
	$(PY) -m pytest -q -n 2 --dist loadfile tests/integration tests/model tests/e2e

test-fast: setup
	$(PY) -m pytest -q tests/unit -m "not slow"

test-model: setup
	$(PY) -m pytest -q tests/model

lint: setup
	$(VENV)/bin/ruff check .

# mutation testing of the decision and significance modules ([tool.mutmut] in pyproject.toml); survivors are
# listed in docs/development.md
mutation: setup
	$(PY) -m pip install -q -c constraints.txt -e ".[mutation]"
	$(VENV)/bin/mutmut run --max-children 2; $(VENV)/bin/mutmut results

# One web worker and no background job consumers (MLflow's defaults, 4 workers and its job runner,
# take about 3 GB and 35 s to answer on 2 cores); MLFLOW_SERVER_ENABLE_JOB_EXECUTION=true brings jobs back.
mlflow-ui: setup
	@echo "Open http://127.0.0.1:5000/#/experiments?workflowType=machine_learning (the model-training view)"
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=$${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false} \
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///mlflow.db --port 5000 --workers $(MLFLOW_UI_WORKERS)

# A registered model as a REST endpoint (POST /invocations), once `run.py check-model` has found it (and an ensemble's
# members) to be the project's wrappers: mlflow models serve unpickles it. TRUST_MODEL=1 skips the check. The venv's
# bin/ goes first on PATH: mlflow starts its server (uvicorn) from there.
serve: setup
	$(if $(TRUST_MODEL),,MLFLOW_TRACKING_URI=$${MLFLOW_TRACKING_URI:-sqlite:///$(abspath mlflow.db)} $(PY) run.py check-model "$(MODEL)")
	PATH="$(abspath $(VENV))/bin:$$PATH" MLFLOW_TRACKING_URI=$${MLFLOW_TRACKING_URI:-sqlite:///$(abspath mlflow.db)} \
	$(VENV)/bin/mlflow models serve -m "$(MODEL)" --env-manager local --host 127.0.0.1 --port $(PORT) \
	--workers $(SERVE_WORKERS) --timeout $(SERVE_TIMEOUT)
