# Two commands for a new user: `make run` and `make test`. Both set up .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: run test lint typecheck pytest screenshots lock bench clean

# What running needs: requirements.lock (with hatchling and editables, so the editable install of
# authapp builds offline), then authapp itself.
$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --requirement requirements.lock
	$(BIN)/pip install --quiet --no-deps --no-build-isolation --editable .
	touch $@

# What testing adds on top (pytest, ruff, mypy, Playwright, schemathesis, ...): requirements-dev.lock
# pins every runtime package at the version requirements.lock does, so this only adds packages.
$(DEV_STAMP): $(STAMP) requirements-dev.lock
	$(BIN)/pip install --quiet --requirement requirements-dev.lock
	touch $@

## run: start authapp on http://127.0.0.1:8000 (AUTHAPP_BIND; embedded PostgreSQL unless AUTHAPP_DATABASE_URL is set)
# exec: the server is make's own child, which make passes its signals to, and which stops
# when make ends however it ends (even by SIGKILL).
run: $(STAMP)
	AUTHAPP_ENV=$${AUTHAPP_ENV:-development} exec $(BIN)/authapp serve --exit-with-parent

## test: lint, type-check and run the whole test suite
test: lint typecheck pytest

lint: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(DEV_STAMP)
	$(BIN)/mypy

pytest: $(DEV_STAMP)
	$(BIN)/pytest $(PYTEST_ARGS)

## screenshots: drive chromium through the pages and save what it shows to docs/screenshots
screenshots: $(DEV_STAMP)
	AUTHAPP_SCREENSHOTS=docs/screenshots $(BIN)/pytest tests/test_browser.py -q

## bench: load authapp under Hypercorn on PostgreSQL and print the table of README's Performance
bench: $(DEV_STAMP)
	$(BIN)/python bench/run.py $(BENCH_ARGS)

## lock: re-resolve requirements-dev.lock and requirements.lock from pyproject.toml
# The dev lock (everything) first, then the runtime lock within it: each runtime pin is the same in
# both, so `make test` on top of `make run` only adds packages (tests/test_locks.py checks).
lock: $(STAMP)
	$(BIN)/pip install --quiet uv
	$(BIN)/uv pip compile pyproject.toml --extra dev --group build --universal --python-version 3.11 \
		--output-file requirements-dev.lock --quiet
	$(BIN)/uv pip compile pyproject.toml --group build --constraints requirements-dev.lock \
		--universal --python-version 3.11 --output-file requirements.lock --quiet

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
