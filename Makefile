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
MLFLOW_UI_WORKERS ?= 1

.PHONY: setup train ingest test test-fast test-model lint mlflow-ui serve benchmark schedule

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e ".[dev]"
	touch $@

setup: $(VENV)/.installed

train: setup
	$(PY) run.py --pipeline train_all $(RUN_ARGS)

ingest: setup
	$(PY) run.py --pipeline ingest $(RUN_ARGS)

schedule: setup
	$(PY) run.py --pipeline train_all --schedule $(RUN_ARGS)

# every tier: tests/unit (the core, seconds), tests/integration (ZenML, MLflow, subprocesses), tests/model
# (behaviour of a trained model: MODEL_URI=models:/NAME@ALIAS checks a registered one instead of the fixture's)
test: setup
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q tests/unit

test-model: setup
	$(PY) -m pytest -q tests/model

lint: setup
	$(VENV)/bin/ruff check .

# One web worker and no background job consumers (MLflow's defaults, 4 workers and its job runner,
# take about 3 GB and 35 s to answer on 2 cores); MLFLOW_SERVER_ENABLE_JOB_EXECUTION=true brings jobs back.
mlflow-ui: setup
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=$${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false} \
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///mlflow.db --port 5000 --workers $(MLFLOW_UI_WORKERS)

# A registered model as a REST endpoint (POST /invocations). The venv's bin/ goes first on PATH: mlflow
# starts its server (uvicorn) from there.
serve: setup
	PATH="$(abspath $(VENV))/bin:$$PATH" MLFLOW_TRACKING_URI=$${MLFLOW_TRACKING_URI:-sqlite:///$(abspath mlflow.db)} \
	$(VENV)/bin/mlflow models serve -m "$(MODEL)" --env-manager local --host 127.0.0.1 --port $(PORT) --workers 1
