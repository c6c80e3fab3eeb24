# Two commands for a new user: `make run` and `make test`. Both set up .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck pytest screenshots lock bench clean

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --requirement requirements.lock
	$(BIN)/pip install --quiet --no-deps --no-build-isolation --editable .
	touch $@

## run: start authapp on http://127.0.0.1:8000 (AUTHAPP_BIND; embedded PostgreSQL unless AUTHAPP_DATABASE_URL is set)
# exec: the server is make's own child, which make passes its signals to, and which stops
# when make ends however it ends (even by SIGKILL).
run: $(STAMP)
	AUTHAPP_ENV=$${AUTHAPP_ENV:-development} exec $(BIN)/authapp serve --exit-with-parent

## test: lint, type-check and run the whole test suite
test: lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest $(PYTEST_ARGS)

## screenshots: drive chromium through the pages and save what it shows to docs/screenshots
screenshots: $(STAMP)
	AUTHAPP_SCREENSHOTS=docs/screenshots $(BIN)/pytest tests/test_browser.py -q

## bench: load authapp under Hypercorn on PostgreSQL and print the table of README's Performance
bench: $(STAMP)
	$(BIN)/python bench/run.py $(BENCH_ARGS)

## lock: re-resolve requirements.lock from pyproject.toml
lock: $(STAMP)
	$(BIN)/pip install --quiet uv
	$(BIN)/uv pip compile pyproject.toml --extra dev --universal --python-version 3.11 \
		--output-file requirements.lock --quiet

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
