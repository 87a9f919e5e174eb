# The developer commands. CI (.ci/run) calls the same targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: run up test bench lint fmt gen check-gen buf-lint deps node-deps clean

# The pinned dependencies, then the SDK and the server as editable packages
# (no PYTHONPATH anywhere: the services run as an installed user would run them).
# The SDK's editable install copies the public contract's generated modules
# into site-packages, so it is redone when they change.
$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml sdk/pyproject.toml \
		$(wildcard coremachine/common/v1/*.py coremachine/jobs/v1/*.py)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps -e ./sdk -e .
	touch $@

deps: $(VENV)/.installed

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

node-deps: node_modules/.installed

## make run: the whole stack on the embedded default, one hello_world n=100 job, result printed.
run: deps
	$(VENV)/bin/coremachine-server run

## make up: the stack in the foreground until Ctrl-C / SIGTERM.
up: deps
	$(VENV)/bin/coremachine-server up

## make test: generated-code check, proto lint, ruff and mypy, then the test suite.
test: deps node-deps check-gen buf-lint lint
	$(PY) -m pytest $(PYTEST_ARGS)

## make bench: throughput and latency benchmark (see README).
bench: deps
	$(PY) -m bench $(BENCH_ARGS)

gen: deps
	PYTHON=$(CURDIR)/$(PY) tools/gen_protos.sh
	$(PY) -m pip install --quiet --no-deps -e ./sdk

check-gen: deps
	PYTHON=$(CURDIR)/$(PY) tools/check_gen.sh

buf-lint: node-deps
	npx --no-install buf lint

lint: deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy coremachine bench sdk/coremachine_sdk

fmt: deps
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) node_modules .data .pytest_cache
