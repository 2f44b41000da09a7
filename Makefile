# The README's two commands: `make demo` (the main job) and `make test` (every suite).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: setup demo test test-slurm-24 test-slurm-26 unit up cluster down bench lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml simulation_kernels/pyproject.toml constraints/airflow-3.3.2-py3.11.txt scripts/bootstrap
	bash scripts/bootstrap
	touch $(STAMP)

## demo: run the case-study workflows on the embedded local backend and write the report
demo: setup
	bash scripts/demo

## test: install everything, start the local Slurm cluster and sshd, run all suites
test: setup
	bash scripts/run-tests

## test-slurm-24: the Slurm suites (local, REST and SSH transports, cluster faults, the example
## DAG) against Slurm 24.11, built once from Debian's source archive (scripts/build-slurm) and
## run beside the 22.05 cluster with its own ports and state; not part of `make test` yet
SLURM_SUITES := tests/integration/test_local_cluster.py tests/integration/test_slurm_execution.py \
	tests/hostile/test_hostile_cluster.py tests/faults tests/integration/test_dags_e2e.py
test-slurm-24: setup
	HPCAI_SLURM_VERSION=24.11 bash scripts/local-slurm up
	HPCAI_SLURM_VERSION=24.11 bash scripts/local-sshd up
	HPCAI_SLURM_VERSION=24.11 HPCAI_REQUIRE_SERVICES=1 PATH="$(CURDIR)/$(VENV)/bin:$$PATH" \
		$(PY) -m pytest $(SLURM_SUITES) -q -p no:cacheprovider --timeout=900

## test-slurm-26: the same suites against Slurm 26.05 (REST v0.0.42-v0.0.45), built from an
## upstream tarball when Debian's archive cannot serve it (HPCAI_SLURM_TARBALL, scripts/build-slurm)
test-slurm-26: setup
	HPCAI_SLURM_VERSION=26.05 bash scripts/local-slurm up
	HPCAI_SLURM_VERSION=26.05 bash scripts/local-sshd up
	HPCAI_SLURM_VERSION=26.05 HPCAI_REQUIRE_SERVICES=1 PATH="$(CURDIR)/$(VENV)/bin:$$PATH" \
		$(PY) -m pytest $(SLURM_SUITES) -q -p no:cacheprovider --timeout=900

## unit: the fast suites only (no services)
unit: setup
	$(PY) -m pytest tests/unit -q

## cluster: start the local Slurm cluster and the loopback sshd
cluster:
	bash scripts/local-slurm up
	bash scripts/local-sshd up

## up: airflow standalone with the provider, the plugin and the policy
up: setup
	bash scripts/airflow-up

down:
	-bash scripts/local-sshd down
	-bash scripts/local-slurm down

bench: setup cluster
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) out .pytest_cache
