# The developer commands. CI (.ci/run) calls the same targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: run up test bench load soak lint fmt gen check-gen buf-lint deps node-deps clean

# The pinned dependencies, then the SDK and the server as editable packages
# (no PYTHONPATH anywhere: the services run as an installed user would run them).
# The SDK's editable install copies the public contract's generated modules
# into site-packages, so it is redone when they change.
$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml sdk/pyproject.toml \
		$(wildcard coremachine/common/v1/*.py coremachine/jobs/v1/*.py)
	PYTHON=$(PYTHON) tools/make_venv.sh $(VENV)
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

## make up: the stack in the foreground until Ctrl-C / SIGTERM; a process that
## exits is restarted. Replicas and ports:
##   make up WORKERS=3 ORCHESTRATORS=2 STATES=2 GATEWAYS=1 HTTP_PORT=8080 GRPC_PORT=50051
UP_ARGS = $(if $(STATES),--states $(STATES)) $(if $(ORCHESTRATORS),--orchestrators $(ORCHESTRATORS)) \
	$(if $(WORKERS),--workers $(WORKERS)) $(if $(GATEWAYS),--gateways $(GATEWAYS)) \
	$(if $(HTTP_PORT),--http-port $(HTTP_PORT)) $(if $(GRPC_PORT),--grpc-port $(GRPC_PORT)) \
	$(if $(STATE_PORT),--state-port $(STATE_PORT)) \
	$(if $(ORCHESTRATOR_PORT),--orchestrator-port $(ORCHESTRATOR_PORT)) \
	$(if $(WORKER_PORT),--worker-port $(WORKER_PORT)) $(if $(PORT_STEP),--port-step $(PORT_STEP))
up: deps
	$(VENV)/bin/coremachine-server up $(UP_ARGS)

## make test: generated-code check, proto lint, ruff and mypy, the test suite, then a
## short soak (flat RSS, every job finished, no 5xx) and the benchmark at small sizes
## (so that both keep working; figures are not asserted). CI runs exactly this.
## TEST_SOAK_SECONDS=0 skips the soak and the smoke benchmark (a quicker local run).
TEST_SOAK_SECONDS ?= 60
test: deps node-deps check-gen buf-lint lint
	$(PY) -m pytest $(PYTEST_ARGS)
	@if [ "$(TEST_SOAK_SECONDS)" != "0" ]; then \
		$(PY) -m bench.soak --duration $(TEST_SOAK_SECONDS) && $(PY) -m bench --smoke; \
	fi

## make bench: throughput and latency benchmark (see README).
bench: deps
	$(PY) -m bench $(BENCH_ARGS)

## make load: many concurrent clients against the gateway (its own stack); a
## report of rate, p50/p99 and answers per kind; fails on any 5xx.
load: deps
	$(PY) -m bench.load $(LOAD_ARGS)

## make soak DURATION=600: steady mixed load; RSS and connections per service
## over time; fails on a 5xx, an unfinished job, or RSS that grows.
DURATION ?= 600
soak: deps
	$(PY) -m bench.soak --duration $(DURATION) $(SOAK_ARGS)

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
