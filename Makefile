# Every target installs what it needs first; only Python 3.11+ is assumed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The Dagster instance of `make dev` (and of `dora demo`, which defaults to the same folder).
DEV_DAGSTER_HOME ?= $(CURDIR)/.dora/dagster_home

.PHONY: install test demo dev bench lint format

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

test: install
	$(BIN)/pytest

demo: install
	$(BIN)/dora demo

dev: install
	mkdir -p "$(DEV_DAGSTER_HOME)"
	touch "$(DEV_DAGSTER_HOME)/dagster.yaml"
	DAGSTER_HOME="$(DEV_DAGSTER_HOME)" $(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

bench: install
	$(BIN)/python bench/api_ingest.py
	$(BIN)/python bench/pagerduty_sync.py
	$(BIN)/python bench/metrics_backfill.py
	$(BIN)/python bench/steady_state.py
	$(BIN)/python bench/change_failures.py
	$(BIN)/python bench/lead_time.py

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .
