# RideFlow. `make run` starts everything; `make test` runs the tests. Both install what they need.
SHELL := /bin/bash
PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
	&& echo $$p && break; done)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run demo test test-fast test-faults soak bench lint typecheck format check system clean

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "RideFlow needs Python 3.11 or newer" >&2; exit 1; }
	@scripts/ensure-system.sh $(PYTHON)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,bench]'
	@touch $(STAMP)

system:
	@scripts/ensure-system.sh $(PYTHON)

## run: start a managed Redis (unless RIDEFLOW_REDIS_URL is set), the API on :8000, a dispatcher
run: $(STAMP) system
	$(BIN)/rideflow up

## demo: `rideflow up` plus a city simulation against it (scripts/demo.sh); prints the
## dashboard's address and a demo ADMIN's login, opens nothing
demo: $(STAMP) system
	@scripts/demo.sh

## test: the test suite, against throwaway redis-servers it starts itself: pure logic, the Lua
## scripts' contracts, scenarios with the app and workers in-process, then real processes (e2e).
## Two pytest workers, each with a redis-server of its own: much of the e2e tier waits on
## processes starting, dying and timing out, which the other worker's tests fill.
## Then the end-to-end tier (races, kills, real processes) again on a 3-master Redis Cluster
## each worker starts for itself (tests/cluster.py): `pytest --redis cluster`.
test: $(STAMP) system
	$(BIN)/pytest -n 2
	$(BIN)/pytest -n 2 --redis cluster tests/e2e

## test-fast: pure logic and the Lua scripts' contracts only; no RideFlow process is started
test-fast: $(STAMP) system
	$(BIN)/pytest tests/unit tests/scripts

## test-faults: the fault suite (tests/faults), one test at a time so that each fault is
## inflicted under the load it names: Redis SIGKILLed under 200 orders/s (AOF everysec and
## always), PostgreSQL stopped for 60 s, API processes killed with -9, and a 3-minute soak of
## `rideflow up`. About 6 minutes; the figures each fault produced are printed at the end.
test-faults: $(STAMP) system
	$(BIN)/pytest tests/faults

## soak: the soak of the fault suite for an hour (RIDEFLOW_SOAK_S seconds, RIDEFLOW_SOAK_RATE
## orders/s); not in CI
soak: $(STAMP) system
	RIDEFLOW_SOAK_S=$${RIDEFLOW_SOAK_S:-3600} $(BIN)/pytest tests/faults/test_soak.py -s

## bench: load generators on loopback; writes bench/RESULTS.md
bench: $(STAMP) system
	$(BIN)/python -m bench.run

lint: $(STAMP)
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples

typecheck: $(STAMP)
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format src tests bench examples
	$(BIN)/ruff check --fix src tests bench examples

check: lint typecheck test

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
