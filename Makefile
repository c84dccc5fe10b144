# Two commands set up everything on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run run-mt5 run-observed run-cluster test system-deps prometheus chromium bench soak lint fmt install clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/ordermesh up

# the same with an MT5 gateway (against the bridge simulator) beside the paper venue
run-mt5: $(STAMP)
	$(VENV)/bin/ordermesh --config deploy/mt5/ordermesh-mt5.yaml up --mt5-sim

# the same on a 3-node NATS cluster (loopback, replicas 3) with two of each service: routers sharing the account
# partitions, an active and a standby paper gateway, two sizers, two keepers (the live view shows who holds what)
run-cluster: $(STAMP)
	$(VENV)/bin/ordermesh up --cluster

# the same with Prometheus beside it on 127.0.0.1:9090 (when installed: `make prometheus`), with the alert rules
run-observed: $(STAMP)
	$(VENV)/bin/ordermesh up --prometheus

# two workers (pytest-xdist): most tests wait on processes and the bus, so two run side by side on 2 cores
test: $(STAMP) system-deps
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q -n 2

# Debian packages some tests need, installed when missing (as root, with apt-get; one `apt-get update` for all):
# prometheus + promtool for the alert-rule, dashboard and Prometheus tests (RUNLEVEL=1: its service is not
# started), chromium + chromedriver for the console's browser tests. Elsewhere those tests are skipped.
system-deps:
	@missing=""; \
	command -v promtool >/dev/null 2>&1 || missing="$$missing prometheus"; \
	{ command -v chromium && command -v chromedriver; } >/dev/null 2>&1 || missing="$$missing chromium chromium-driver"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "make: installing$$missing (Debian packages for the tests)" >&2; \
	    apt-get update -qq && RUNLEVEL=1 DEBIAN_FRONTEND=noninteractive \
	      apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else \
	    echo "make:$$missing not found and not installable here (root and apt-get needed): those tests are skipped" >&2; \
	  fi; \
	fi

prometheus chromium: system-deps

# the deployment files' checks alone (deploy/docker, deploy/compose.yaml, deploy/k8s; part of `make test` too)
.PHONY: test-deploy
test-deploy: $(STAMP) system-deps
	$(PY) -m pytest -q tests/deploy

bench: $(STAMP)
	$(PY) -m tests.bench

# the whole system at a fixed open-loop rate, reported per minute into BENCHMARKS.md (tests/bench/soak.py);
# e.g. `make soak SOAK_MINUTES=2 SOAK_RATE=300 SOAK_ARGS=--no-write`. 300,000 fills in 10 minutes need 500/s;
# the 2-CPU bench machine sustains about 200/s with today's services, so that is the default until they do more.
SOAK_MINUTES ?= 10
SOAK_RATE    ?= 200
SOAK_ARGS    ?=
soak: $(STAMP)
	$(PY) -m tests.bench.soak --minutes $(SOAK_MINUTES) --rate $(SOAK_RATE) $(SOAK_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

fmt: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf $(VENV) .ordermesh .pytest_cache .ruff_cache
