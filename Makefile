# PeerPush Ledger developer tasks. `make` (or `make help`) lists them.
PY ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help venv run demo test test-reliability lint format bench migrate audit clean-data

help: ## List the targets with a one-line description each
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) \
		| awk 'BEGIN {FS = ":.*## "}; {printf "  %-12s %s\n", $$1, $$2}'

venv: $(STAMP) ## Create .venv and install the project with dev extras (only when pyproject.toml changes)

$(VENV)/bin/python:
	$(PY) -m venv $(VENV)

# The stamp records a successful install; it is older than pyproject.toml only after an edit.
$(STAMP): pyproject.toml | $(VENV)/bin/python
	$(VPY) -m pip install --upgrade pip
	$(VPY) -m pip install -e '.[dev]'
	touch $(STAMP)

run: venv ## Migrate and serve the HTTP API on http://127.0.0.1:8000 (embedded PostgreSQL unless DATABASE_URL)
	ENV=development $(VPY) -m api.cli serve

demo: venv ## Play a scripted four-player challenge and print the balances
	ENV=development $(VPY) -m api.cli demo

test: venv ## Run the test suite but the long reliability runs (DATABASE_URL or the embedded PostgreSQL)
	ENV=development $(VPY) -m pytest -m "not long"

# The long versions of tests/reliability (their quick versions run in `make test` too).
test-reliability: venv ## Simulation, load, crashes, hostile input, attacks, long; writes docs/reliability.md
	ENV=development RELIABILITY_SECONDS=$${RELIABILITY_SECONDS:-60} \
		RELIABILITY_SEEDS=$${RELIABILITY_SEEDS:-500} RELIABILITY_EXAMPLES=$${RELIABILITY_EXAMPLES:-300} \
		RELIABILITY_KILLS=$${RELIABILITY_KILLS:-3} \
		RELIABILITY_REPORT=docs/reliability.md $(VPY) -m pytest tests/reliability -q

lint: venv ## ruff check, ruff format --check, mypy --strict on every package (what CI runs)
	$(VPY) -m ruff check .
	$(VPY) -m ruff format --check .
	$(VPY) -m mypy

format: venv ## Apply ruff's fixes and formatting
	$(VPY) -m ruff check --fix .
	$(VPY) -m ruff format .

bench: venv ## Every benchmark, one table (also JSON in bench/results/); BENCH_QUICK=1: a few minutes
	@command -v wrk >/dev/null || { \
		echo "installing wrk from Debian's packages"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get install -y wrk || { $$SUDO apt-get update && $$SUDO apt-get install -y wrk; }; }
	@command -v pgbench >/dev/null || { \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get install -y postgresql-client || { $$SUDO apt-get update && $$SUDO apt-get install -y postgresql-client; }; }
	ENV=development PYTHONPATH=. $(VPY) bench/run.py

migrate: venv ## Apply database migrations
	ENV=$${ENV:-development} $(VPY) -m api.cli migrate

audit: venv ## Replay and verify the stream, read models and hash chain (read-only; ARGS=--json)
	$(VPY) -m projections.audit verify $(ARGS)

clean-data: ## Remove ./.data (the embedded PostgreSQL and local files)
	rm -rf ./.data
