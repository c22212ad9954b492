# The two commands of the README: `make demo` and `make test`. Both set up .venv first (idempotent).
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup demo test lint bench data
setup:
	@VENV=$(VENV) scripts/setup.sh

demo: setup
	$(BIN)/s2 tui

test: setup
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -p no:cacheprovider

lint: setup
	$(BIN)/ruff check .

data: setup
	$(BIN)/s2 data fetch

bench: setup data
	@for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done
