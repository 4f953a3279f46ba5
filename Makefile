# Everything a developer or CI needs. `make run` and `make test` build .venv when missing.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
UV_VERSION := 0.13.8
VENV := .venv
BIN := $(VENV)/bin
# Use the uv on PATH if there is one, else a private copy installed from PyPI.
UV := $(or $(shell command -v uv 2>/dev/null),.tools/bin/uv)
STAMP := $(VENV)/.synced
# httpyac, pinned by its package-lock.json, runs payment.http and deposit.http in the e2e tests.
HTTPYAC_DIR := tools/httpyac
HTTPYAC := $(HTTPYAC_DIR)/node_modules/.package-lock.json

GATEWAY_PORT ?= 8080
BANK_PORT ?= 8081

.PHONY: help install run test test-fast lint format openapi bench clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "} {printf "  make %-10s %s\n", $$1, $$2}'

.tools/bin/uv:
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet "uv==$(UV_VERSION)"

$(STAMP): uv.lock pyproject.toml payment_gateway/pyproject.toml bank_simulator/pyproject.toml | $(UV)
	$(UV) sync --frozen --all-packages
	@touch $(STAMP)

# Without npm the request-file tests skip and say why (under CI=true they fail instead).
$(HTTPYAC): $(HTTPYAC_DIR)/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
	  npm ci --prefix $(HTTPYAC_DIR) --ignore-scripts --no-audit --no-fund; \
	else \
	  echo "npm not found: httpyac not installed, the request-file tests will skip"; \
	fi

install: $(STAMP) $(HTTPYAC) ## Build .venv (both services, editable, and the dev tools) and tools/httpyac, as locked

# The uvicorn flags are the production ones (README.md, Server flags; tests/deploy checks them).
RUN_ENV := BANK_URL=http://127.0.0.1:$(BANK_PORT) PUBLIC_URL=http://127.0.0.1:$(GATEWAY_PORT) \
	BANK_PUBLIC_URL=http://127.0.0.1:$(BANK_PORT)

run: $(STAMP) ## Run the bank simulator (:8081) and the gateway (:8080) on embedded SQLite
	@echo "gateway http://127.0.0.1:$(GATEWAY_PORT)/docs  bank http://127.0.0.1:$(BANK_PORT)  (Ctrl-C stops both)"
	@echo "hosted payment page of merchant_one (pay with 4242 4242 4242 4242, any CVC, a future date):"
	@$(RUN_ENV) LOG_LEVEL=ERROR $(BIN)/python -m payment_gateway checkout create merchant_one \
		--amount 1000 --currency EUR --reference demo-order | sed 's/^/  /'
	@trap 'kill 0' EXIT; \
	$(BIN)/uvicorn bank_simulator.main:app --port $(BANK_PORT) --no-access-log \
		--limit-concurrency 2048 --timeout-keep-alive 5 --no-server-header & \
	$(RUN_ENV) $(BIN)/uvicorn payment_gateway.main:app --port $(GATEWAY_PORT) \
		--http payment_gateway.http_server:BoundedHttpToolsProtocol \
		--limit-concurrency 1024 --timeout-keep-alive 5 --no-server-header

test: $(STAMP) $(HTTPYAC) ## All tests: unit, integration (SQLite + MariaDB), e2e, deployment files, fuzzing
	$(BIN)/pytest

test-fast: $(STAMP) ## Unit tests only
	$(BIN)/pytest payment_gateway/tests/unit bank_simulator/tests/unit

lint: $(STAMP) ## ruff (lint + format check) and mypy --strict, tests included
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy  # what it checks, and how the tests' modules are named: pyproject.toml, [tool.mypy]

format: $(STAMP) ## Apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

openapi: $(STAMP) ## Regenerate openapi.yaml from the gateway app
	$(BIN)/python tools/export_openapi.py > openapi.yaml

bench: $(STAMP) ## Benchmark the full stack; flags via ARGS, e.g. make bench ARGS=--quick (see bench/README.md)
	$(BIN)/python -m bench $(ARGS)

clean: ## Remove the venv, caches and local data
	rm -rf $(VENV) .tools $(HTTPYAC_DIR)/node_modules var .pytest_cache .mypy_cache .ruff_cache .hypothesis
