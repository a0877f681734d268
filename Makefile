# The two commands of the quick start: `make up` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: up test test-fast lint protos check-protos bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

up: $(STAMP)
	$(BIN)/reengage up

# Two pytest-xdist workers, each with its own embedded PostgreSQL and Temporal servers; a test
# file stays on one worker (--dist loadfile), so module-scoped stacks are built once.
TEST_WORKERS ?= 2

test: $(STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile

# The cases that need no server (no PostgreSQL, no Temporal, no processes): see tests/conftest.py.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m fast

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	cd protos && ../$(BIN)/buf lint

protos: $(STAMP)
	$(BIN)/python -m server.protogen

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .reengage
