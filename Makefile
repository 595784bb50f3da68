# The developer verbs. README and CI use exactly these.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
PG_TEST_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/test
REDIS_TEST_URL ?= redis://127.0.0.1:6379/15

.PHONY: install install-test run test test-python test-postgres test-browser test-fleet test-js lint format bench chromium clean

install: $(VENV)/.installed node_modules/.installed ## venv with the package and the npm packages (translations are read from their .po files at start)

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed pyproject.toml
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

install-test: install $(VENV)/.installed-test chromium

# `make run PORT=9000` serves on another port (the emulator then takes PORT + 1); so does
# EMBEDPORTAL_PORT, or `.venv/bin/embedportal serve --port 9000`.
run: install ## serve the portal on the embedded default (SQLite + the built-in emulator)
	$(BIN)/embedportal serve $(if $(PORT),--port $(PORT))

# Debian's Chromium drives the browser tests; test tools may not download browsers.
chromium:
	@test -x /usr/bin/chromium || { \
	  echo "Installing Debian's chromium for the browser tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

# The SQLite and PostgreSQL runs and the JavaScript tests run side by side (each prints when it
# ends); the browser tests follow on their own, so their real-time waits are not starved of CPU.
# They are separate pytest runs anyway: Playwright's sync loop must not outlive them into
# asyncio tests. The fleet tests (real portal processes on PostgreSQL and a Redis of their own)
# come last, alone, for the same reason as the browser tests.
test: install-test ## the whole suite: Python (SQLite), again on PostgreSQL, browser, JavaScript, fleet
	$(MAKE) --no-print-directory -j3 --output-sync=target test-python test-postgres test-js
	$(MAKE) --no-print-directory test-browser
	$(MAKE) --no-print-directory test-fleet

test-python:
	EMBEDPORTAL_TEST_REDIS_URL=$(REDIS_TEST_URL) $(BIN)/pytest -m "not browser and not fleet" -q

test-postgres:
	EMBEDPORTAL_TEST_DATABASE_URL=$(PG_TEST_URL) EMBEDPORTAL_TEST_REDIS_URL=$(REDIS_TEST_URL) \
	  $(BIN)/pytest -m "not browser and not fleet" -q -p no:cacheprovider

# Two workers, each with whole files (their module-scoped portals start once): the browser tests
# mostly wait on real token lifetimes, so two side by side take about two thirds of the time.
test-browser:
	EMBEDPORTAL_TEST_REDIS_URL=$(REDIS_TEST_URL) $(BIN)/pytest -m browser -n 2 --dist loadfile

# Two instances and a `--workers 2` one, the emulator and a redis-server of the tests' own.
test-fleet:
	EMBEDPORTAL_TEST_DATABASE_URL=$(PG_TEST_URL) $(BIN)/pytest -m fleet -q -p no:cacheprovider tests/fleet

test-js: node_modules/.installed
	node --test tests/js/

lint: install-test ## ruff (lint + format check) and mypy strict
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples
	$(BIN)/mypy

format: install-test
	$(BIN)/ruff format src tests bench examples
	$(BIN)/ruff check --fix src tests bench examples

bench: install-test ## benchmarks print their figures; nothing here asserts timings
	$(PY) -m bench

clean:
	rm -rf $(VENV) node_modules var .pytest_cache .mypy_cache .ruff_cache
