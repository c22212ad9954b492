# The two commands of the README: `make demo` and `make test`. Both set up .venv first (idempotent).
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup demo test lint bench data
setup:
	@VENV=$(VENV) scripts/setup.sh

demo: setup
	$(BIN)/s2 tui

# ResourceWarnings (a file or socket left open) fail the suite, also when raised in a finaliser (unraisable)
test: setup
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q -p no:cacheprovider -W error::ResourceWarning \
		-W error::pytest.PytestUnraisableExceptionWarning

# Longer property-based runs (tests/test_fuzz.py): many more mutated files and hostile payloads than `make test`
.PHONY: fuzz
fuzz: setup
	S2_FUZZ_EXAMPLES=$${S2_FUZZ_EXAMPLES:-3000} $(BIN)/python -m pytest -q -p no:cacheprovider tests/test_fuzz.py \
		-W error::ResourceWarning -W error::pytest.PytestUnraisableExceptionWarning

lint: setup
	$(BIN)/ruff check .

data: setup
	$(BIN)/s2 data fetch

bench: setup data
	@for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

# Run the fixed evaluations and benchmarks (scripts/results.py, about an hour on 2 cores), store results/*.json,
# render docs/results.md and the README's table. results-render only re-renders from results/*.json.
.PHONY: results results-render
results: setup data
	$(BIN)/python scripts/results.py --run

results-render: setup
	$(BIN)/python scripts/results.py
