# Two-command quickstart: `make train` runs the main job, `make test` runs the tests.
# Both create ./.venv and install the project into it on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DATA ?=
CONFIG ?=
RUN_ARGS = $(if $(DATA),--data $(DATA)) $(if $(CONFIG),--config $(CONFIG))

.PHONY: setup train ingest test mlflow-ui benchmark schedule

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

test: setup
	$(PY) -m pytest -q

mlflow-ui: setup
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///mlflow.db --port 5000
