# The shop's tasks. `make help` lists them.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
# The newest PostgreSQL server installed from Debian's or Ubuntu's packages.
PG_BIN ?= $(lastword $(sort $(wildcard /usr/lib/postgresql/*/bin)))
# Two test processes (pytest-xdist): the suite's database servers, browsers and app servers
# keep both cores busy. PYTEST_ARGS= runs it in one process.
PYTEST_ARGS ?= -n 2
# What the suite needs from the system: a browser, a database server, Redis, Node for axe-core.
TEST_PACKAGES := chromium postgresql redis-server nodejs npm
BENCH_PACKAGES := wrk

.PHONY: help install run test test-sqlite test-postgres test-deps bench-deps lint bench screenshots clean

help: ## List the tasks
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund

install: $(BIN)/.installed ## Create .venv from pyproject.toml (all `make run` needs: Python and make)

run: install ## Serve the shop on http://127.0.0.1:$(PORT) with its worker (SQLite; demo payments unless STRIPE_SECRET_KEY is set)
	DJANGO_DEBUG=$${DJANGO_DEBUG:-true} $(BIN)/python manage.py migrate --noinput
	DJANGO_DEBUG=$${DJANGO_DEBUG:-true} SHOP_BASE_URL=$${SHOP_BASE_URL:-http://127.0.0.1:$(PORT)} \
		SHOP_PORT=$(PORT) PYTHONUNBUFFERED=1 PATH="$(CURDIR)/$(BIN):$$PATH" \
		$(BIN)/honcho start --procfile Procfile

test-deps: ## Install the system packages the suite needs (apt-get, as root), or say how
	@scripts/system-packages $(TEST_PACKAGES)
	@$(MAKE) --no-print-directory node_modules/.package-lock.json

bench-deps:
	@scripts/system-packages $(TEST_PACKAGES) $(BENCH_PACKAGES)

test: install test-deps ## The whole suite on SQLite, then again on a throwaway PostgreSQL server
	$(MAKE) --no-print-directory test-sqlite
	$(MAKE) --no-print-directory test-postgres

test-sqlite: install ## The whole suite on SQLite
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-postgres: install ## The whole suite on a throwaway PostgreSQL cluster
	@if [ -x "$(PG_BIN)/initdb" ]; then \
		$(BIN)/python -m devtools.pgcluster --bin "$(PG_BIN)" -- $(BIN)/python -m pytest $(PYTEST_ARGS); \
	else \
		echo; echo "*** SKIPPED the PostgreSQL run: no PostgreSQL server binaries (make test-deps) ***"; echo; \
		exit 1; \
	fi

lint: install ## ruff and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .

bench: install bench-deps ## Load-test the shop with wrk and write docs/benchmarks.md
	$(BIN)/python -m bench.run

screenshots: install test-deps ## Regenerate docs/screenshots/*.png
	SHOP_SCREENSHOTS_DIR=$(CURDIR)/docs/screenshots $(BIN)/python -m pytest tests/browser/test_screenshots.py -q

clean: ## Remove the virtualenv, node_modules, the SQLite database and caches
	rm -rf $(VENV) node_modules db.sqlite3 staticfiles .pytest_cache .mypy_cache .ruff_cache
