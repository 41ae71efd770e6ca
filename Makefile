# The shop's tasks. `make help` lists them.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
PG_BIN ?= /usr/lib/postgresql/15/bin
PYTEST_ARGS ?=

.PHONY: help install run test test-sqlite test-postgres lint bench screenshots clean

help: ## List the tasks
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund

install: $(BIN)/.installed node_modules/.package-lock.json ## Create .venv and node_modules from the pinned lock files

run: install ## Serve the shop on http://127.0.0.1:$(PORT) (SQLite; demo payments unless STRIPE_SECRET_KEY is set)
	DJANGO_DEBUG=$${DJANGO_DEBUG:-true} $(BIN)/python manage.py migrate --noinput
	DJANGO_DEBUG=$${DJANGO_DEBUG:-true} $(BIN)/python manage.py runserver 127.0.0.1:$(PORT)

test: install ## The whole suite on SQLite, then again on a throwaway PostgreSQL server
	$(MAKE) --no-print-directory test-sqlite
	$(MAKE) --no-print-directory test-postgres

test-sqlite: install ## The whole suite on SQLite
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-postgres: install ## The whole suite on a throwaway PostgreSQL cluster (skipped, loudly, without binaries)
	@if [ -x "$(PG_BIN)/initdb" ]; then \
		$(BIN)/python -m tests.pgcluster --bin "$(PG_BIN)" -- $(BIN)/python -m pytest $(PYTEST_ARGS); \
	else \
		echo "*** SKIPPED the PostgreSQL run: no $(PG_BIN)/initdb (install postgresql-15) ***"; \
	fi

lint: install ## ruff and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .

bench: install ## Load-test the shop with wrk and write docs/benchmarks.md
	$(BIN)/python -m bench.run

screenshots: install ## Regenerate docs/screenshots/*.png
	$(BIN)/python -m pytest tests/browser/test_screenshots.py -q

clean: ## Remove the virtualenv, node_modules, the SQLite database and caches
	rm -rf $(VENV) node_modules db.sqlite3 staticfiles .pytest_cache .mypy_cache .ruff_cache
