# Two commands do everything on a fresh machine:  `make demo`  and  `make test`.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

.PHONY: setup system-packages demo test lint unit bench chaos clean

setup: $(VENV)/.installed system-packages

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev,ui]"
	touch $@

system-packages:
	@bash scripts/install-system-packages.sh

demo: setup
	$(BIN)/slo-pipeline demo

# The whole suite: lint, unit, config checks and integration tests against real services.
test: setup
	@bash scripts/ensure-postgres.sh
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy
	$(BIN)/pytest -p no:cacheprovider

unit: setup
	$(BIN)/pytest -p no:cacheprovider -m "not integration"

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy

bench: setup
	@bash scripts/ensure-postgres.sh
	$(BIN)/python benchmarks/run_all.py

# Storms and faults against real services (minutes; kept out of `make test`): prints one table,
# recorded in docs/reliability.md.
chaos: setup
	@bash scripts/ensure-postgres.sh
	$(BIN)/python benchmarks/chaos.py

clean:
	rm -rf .data
