# Two commands for a fresh clone: `make run` (local app + local Cosmos DB + local queues) and `make test`.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3.12 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
EMULATOR := cosmos-emulator
STORAGE_EMULATOR := storage-emulator
CHECKOV_VENV := .venv-checkov
AGUI_CLIENT := tests/agui_client
## Ports of `make run`, `make cosmos` and `make storage`: `make run PORT=7072 COSMOS_PORT=8082 STORAGE_PORT=10002`
## (STORAGE_PORT: the local Azure Storage emulator's queue service, which carries background turns).
PORT ?= 7071
COSMOS_PORT ?= 8081
STORAGE_PORT ?= 10001

.PHONY: install browser run cosmos storage test lint format bench clean checkov agui-client

## What running needs (Python packages, the local Cosmos DB, the local queues); `make test` adds the browser
## and checkov.
install: $(VENV)/.installed $(EMULATOR)/node_modules/.installed $(STORAGE_EMULATOR)/node_modules/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $@

# npm ci installs exactly the lock file and applies patches/ (patch-package) on postinstall.
$(EMULATOR)/node_modules/.installed: $(EMULATOR)/package.json $(EMULATOR)/package-lock.json $(wildcard $(EMULATOR)/patches/*)
	@command -v npm >/dev/null || { echo "npm is missing: install Node.js 18+ and npm (Debian: the nodejs and npm packages)"; exit 1; }
	npm ci --prefix $(EMULATOR) --no-audit --no-fund --loglevel=error
	@touch $@

## The official AG-UI TypeScript client, for tests/test_agui.py (`make test` only; never deployed).
agui-client: $(AGUI_CLIENT)/node_modules/.installed

$(AGUI_CLIENT)/node_modules/.installed: $(AGUI_CLIENT)/package.json $(AGUI_CLIENT)/package-lock.json
	npm ci --prefix $(AGUI_CLIENT) --no-audit --no-fund --loglevel=error
	@touch $@

# Azurite (the local Azure Storage emulator; only its queue service runs), exactly as locked.
$(STORAGE_EMULATOR)/node_modules/.installed: $(STORAGE_EMULATOR)/package.json $(STORAGE_EMULATOR)/package-lock.json
	@command -v npm >/dev/null || { echo "npm is missing: install Node.js 18+ and npm (Debian: the nodejs and npm packages)"; exit 1; }
	npm ci --prefix $(STORAGE_EMULATOR) --no-audit --no-fund --loglevel=error
	@touch $@

## Debian's chromium and its matching chromedriver, for the chat page's browser test (`make test` only; never
## `make run`). Installed when this runs as root (CI); elsewhere the test is skipped with this hint (and
## fails in CI, where it must run).
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	    chromium chromium-driver fonts-dejavu-core >/dev/null; \
	else echo "The chat page test needs chromium and chromedriver: sudo apt-get install chromium chromium-driver"; fi

## Start the local Cosmos DB, the local queues and the app on http://127.0.0.1:$(PORT)/api (Ctrl-C stops all).
run: install
	@echo "Chat in the browser: http://127.0.0.1:$(PORT)/api/chat"
	@echo "Talk to it:"
	@echo "  curl -s -X POST http://127.0.0.1:$(PORT)/api/sessions/demo/messages -H 'Content-Type: application/json' -d '{\"message\":\"Hello\"}'"
	@echo "  curl -s http://127.0.0.1:$(PORT)/api/sessions/demo"
	@echo "  curl -s http://127.0.0.1:$(PORT)/api/sessions"
	$(PY) -m devtools.devhost --local-cosmos --port $(PORT) --cosmos-port $(COSMOS_PORT) \
	  --local-storage --storage-port $(STORAGE_PORT)

## Only the local Cosmos DB on 127.0.0.1:$(COSMOS_PORT) (in memory): `make run` in another terminal (with the
## same COSMOS_PORT) reuses it, so conversations survive restarts of the app.
cosmos: install
	$(PY) -m devtools.local_cosmos --port $(COSMOS_PORT)

## Only the local queues (Azurite) on 127.0.0.1:$(STORAGE_PORT), in memory: `make run` (same STORAGE_PORT)
## reuses it, so queued background turns survive restarts of the app.
storage: install
	$(PY) -m devtools.local_storage --port $(STORAGE_PORT)

## The whole suite; the tests start (and stop) their own local Cosmos DB and app hosts.
test: install browser checkov agui-client
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m pytest -q

## Checkov (the Bicep security scan in tests/test_infra.py) in a venv of its own: it pins many packages.
checkov: $(CHECKOV_VENV)/.installed

$(CHECKOV_VENV)/.installed: infra/requirements-checkov.txt
	@test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	@echo '*' > $(CHECKOV_VENV)/.gitignore
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r infra/requirements-checkov.txt
	@touch $@

## Measure this backend against the framework's CosmosHistoryProvider; writes docs/performance.md (~30 min;
## `.venv/bin/python -m bench --help` lists options for shorter runs, e.g. `--skip-memory`).
## `make bench PROFILE=1` instead prints the top functions by cumulative time of a steady local-mode turn
## (options: `.venv/bin/python -m bench profile --help`).
bench: install
	$(PY) -m bench $(if $(PROFILE),profile)

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: install
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) $(EMULATOR)/node_modules $(STORAGE_EMULATOR)/node_modules \
	  $(AGUI_CLIENT)/node_modules .pytest_cache .ruff_cache
