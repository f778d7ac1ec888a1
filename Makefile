# One obvious way to run things: `make demo`, `make test`, `make lint`.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: install demo lint format test lock bench chaos

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/rollout-bot demo $(if $(filter-out 0,$(GITHUB_APP)),--github-app)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-cache
	$(PY) .ci/sizes.py

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# The end-to-end tests skip their windows on the sandbox clock; what is left waits on servers
# and processes, so four workers on two cores stay ahead of two. The bounded chaos run starts
# first (tests/conftest.py) and runs beside the rest.
#
# Bytecode is cached even where the environment says not to (PYTHONDONTWRITEBYTECODE=1, as on
# these VMs): otherwise each of the four workers compiles the bot again and rewrites every test
# module's asserts, about 6 CPU-seconds each (README, How long make test takes).
test: lint
	PYTHONDONTWRITEBYTECODE= $(VENV)/bin/pytest -q -n 4 --durations=15

# requirements.lock: the image's dependencies (pyproject.toml's, with the `charts` extra the
# Dockerfile installs), each pinned with its wheels' hashes, for Python 3.11 on the image's Linux
# (glibc 2.36, bookworm). Run it after changing pyproject.toml's dependencies: every other pin
# stays. `make lock UPGRADE=slack-sdk` (or several names) upgrades those packages,
# `make lock UPGRADE=all` every one (docs/operating.md, Dependencies).
UPGRADE ?=
lock: $(STAMP)
	$(VENV)/bin/uv pip compile --quiet pyproject.toml --extra charts \
		--python-version 3.11 --python-platform x86_64-manylinux_2_36 --only-binary :all: \
		--generate-hashes --custom-compile-command 'make lock' \
		$(if $(filter all,$(UPGRADE)),--upgrade,$(addprefix --upgrade-package ,$(UPGRADE))) \
		--output-file requirements.lock

bench: $(STAMP)
	$(PY) bench/gate_startup.py
	$(PY) bench/serve_load.py 20
	$(PY) bench/ack_latency.py 100 10
	$(PY) bench/timers.py sqlite 500
	$(PY) bench/timers.py postgres 500
	$(PY) bench/timer_workers.py sqlite 500
	$(PY) bench/idle_queries.py sqlite 40 1 200
	$(PY) bench/idle_queries.py postgres 40 1 200
	$(PY) bench/rollout_reads.py sqlite
	$(PY) bench/rollout_reads.py postgres
	$(PY) bench/services_scale.py 50 5
	$(PY) bench/stop_latency.py 3

# The long chaos run: three serve replicas on a fresh PostgreSQL database under faults, at
# least ten rollouts for DURATION seconds; prints the figures, fails on a broken invariant.
# GITHUB_APP=1: the replicas run as a GitHub App, every stage held by its protection rule;
# SERVICES=N: the bot releases N services (each its repository and channel) side by side.
SEED ?= 1
DURATION ?= 300
GITHUB_FAULTS ?= 0.2
SLACK_FAULTS ?= 0.1
SERVICES ?= 1
chaos: $(STAMP)
	$(PY) -m sandbox.chaos --seed $(SEED) --duration $(DURATION) \
		--github-faults $(GITHUB_FAULTS) --slack-faults $(SLACK_FAULTS) \
		--services $(SERVICES) $(if $(filter-out 0,$(GITHUB_APP)),--github-app)
