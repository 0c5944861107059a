# FAME Stream — the two commands a user needs are `make demo` and `make test`.
# Both create (or reuse, when current) the virtualenv .venv in the repo root.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
UV_VERSION := 0.13.8
STAMP := $(VENV)/.installed
SERVICES := $(PY) deploy/local/services.py
PYTEST_ARGS ?=

.PHONY: help install demo test check lint typecheck pytest services-up services-down \
        services-status schemas bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml deploy/requirements/overrides.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check uv==$(UV_VERSION)
	$(VENV)/bin/uv pip install --python $(PY) --override deploy/requirements/overrides.txt -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP) ## create/refresh .venv with the pinned dependencies (idempotent)

demo: install ## run the main job on the embedded default (no Kafka, no Redis)
	$(PY) deploy/local/demo.py

test: install ## install, start Kafka + Redis, run lint, types and the whole suite, stop them
	@trap '$(SERVICES) down' EXIT; $(SERVICES) up && $(MAKE) --no-print-directory check

check: lint typecheck pytest ## the gates, against services already up

lint: install ## ruff lint and format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: install ## mypy: strict on schemas/ and consumer/
	$(VENV)/bin/mypy schemas consumer fame bench

pytest: install ## the test suite (needs `make services-up` for integration tests)
	set -a; [ -f .services.env ] && source .services.env; set +a; \
	$(VENV)/bin/pytest $(PYTEST_ARGS)

bench: install ## the CPU benchmark suite (< 10 min; GPU parts run where CUDA is): docs/benchmarks.md
	@trap '$(SERVICES) down' EXIT; $(SERVICES) up && $(PY) -m bench.run $(BENCH_ARGS)

schemas: install ## regenerate schemas/json/*.schema.json from the pydantic models
	$(PY) -m schemas.export

services-up: install ## start the local Kafka (KRaft) and Redis on loopback; writes .services.env
	$(SERVICES) up

services-down: ## stop them
	@if [ -x $(PY) ]; then $(SERVICES) down; fi

services-status: install ## show whether they run
	$(SERVICES) status

clean: services-down ## remove the virtualenv and caches
	rm -rf $(VENV) .cache .pytest_cache .mypy_cache .ruff_cache
