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

## test-slurm-24 / test-slurm-26: only the Slurm suites (local, REST and SSH transports, cluster
## faults, the example DAGs) against Slurm 24.11 or 26.05, built once from source
## (scripts/build-slurm) and run beside the 22.05 cluster with their own ports and state.
## `make test` runs them against 24.11 after the main run; 26.05's source must be given as a
## tarball where Debian's archive cannot serve it (HPCAI_SLURM_TARBALL, see scripts/build-slurm)
test-slurm-24: setup
	bash scripts/run-slurm-suites 24.11

test-slurm-26: setup
	bash scripts/run-slurm-suites 26.05

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
	-HPCAI_SLURM_VERSION=24.11 bash scripts/local-sshd down
	-HPCAI_SLURM_VERSION=24.11 bash scripts/local-slurm down
	-bash scripts/local-gridengine down

bench: setup cluster
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) out .pytest_cache
