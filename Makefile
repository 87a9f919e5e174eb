# The developer commands. CI (.ci/run) calls the same targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export PYTHONPATH := $(CURDIR):$(CURDIR)/gen:$(CURDIR)/sdk

.PHONY: run up test bench lint fmt gen check-gen buf-lint deps node-deps clean

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

deps: $(VENV)/.installed

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

node-deps: node_modules/.installed

## make run: the whole stack on the embedded default, one hello_world n=100 job, result printed.
run: deps
	$(PY) -m stack run

## make up: the stack in the foreground until Ctrl-C / SIGTERM.
up: deps
	$(PY) -m stack up

## make test: generated-code check, proto lint, ruff and mypy, then the test suite.
test: deps node-deps check-gen buf-lint lint
	$(PY) -m pytest $(PYTEST_ARGS)

## make bench: throughput and latency benchmark (see README).
bench: deps
	$(PY) -m bench $(BENCH_ARGS)

gen: deps
	PYTHON=$(CURDIR)/$(PY) tools/gen_protos.sh

check-gen: deps
	PYTHON=$(CURDIR)/$(PY) tools/check_gen.sh

buf-lint: node-deps
	npx --no-install buf lint

lint: deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy shared services stack bench sdk/coremachine_sdk

fmt: deps
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) node_modules .data .pytest_cache
