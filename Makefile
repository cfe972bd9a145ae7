# TWIST book: set-up, tests, data, training and the book. `make help` lists the targets.
PYTHON ?= python3
PROFILE ?= cpu
# The interpreter of every target (tools/interpreter.sh): PYTHON inside an active virtualenv or
# conda env (or with VENV=off); otherwise the project's .venv, which `make setup` creates from
# PYTHON (a system Python refuses pip installs: PEP 668). Its bin/ goes first on PATH.
VENV ?= .venv
PY := $(shell PYTHON='$(PYTHON)' VENV='$(VENV)' bash tools/interpreter.sh)
ifeq ($(PY),)
$(error no Python interpreter: set PYTHON=/path/to/python3)
endif
export PATH := $(dir $(PY)):$(PATH)
export PYTHONUNBUFFERED=1
SETUP = PYTHON='$(PYTHON)' VENV='$(VENV)' bash tools/setup.sh

# Targets that run Python set the environment up first when its interpreter is missing.
$(PY):
	$(SETUP)
data train twist book run-notebooks bench test-fast minkowski: | $(PY)

.PHONY: help setup minkowski test test-fast data train twist main book run-notebooks bench clean

help:
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

setup:  ## install torch (CPU, pinned) if missing, the requirements, twist_lib (editable), the kernel
	$(SETUP)

minkowski:  ## build MinkowskiEngine 0.5.4 from its sdist (CPU-only; CUDA=1: with CUDA) and prove it with a convolution
	PYTHON='$(PY)' CUDA='$(CUDA)' bash tools/build_minkowski.sh

test: setup  ## the test suite (what .ci/run runs): package tests, the notebooks under nbval, the book build
	bash tools/install_chromium.sh
	$(PY) -m pytest -q -rs tests
	OMP_NUM_THREADS=1 TWIST_PROFILE=smoke $(PY) -m pytest -q -rs --nbval-lax --nbval-current-env book/

test-fast:  ## the test suite without set-up and without slow tests
	$(PY) -m pytest -q -rs -m "not slow" tests

data:  ## generate the PROFILE's synthetic benchmark (scenes and label splits) if missing
	$(PY) -m twist_lib data --config configs/baseline_synthetic.yaml --profile $(PROFILE)

train:  ## train the Sup-only baseline on the synthetic benchmark (PROFILE=smoke|cpu|hard|gpu)
	$(PY) -m twist_lib train --config configs/baseline_synthetic.yaml --profile $(PROFILE) --resume-if-exists

twist:  ## TWIST: round 0 + self-training rounds on the synthetic benchmark (PROFILE=smoke|cpu|hard|gpu), resumable
	$(PY) -m twist_lib twist --config configs/twist_synthetic.yaml --profile $(PROFILE) --resume-if-exists

main: setup data train run-notebooks  ## the main job: benchmark, baseline, and the book's notebooks end to end (PROFILE=cpu)

book:  ## build the HTML book with warnings as errors (notebooks execute at PROFILE=smoke unless given)
	$(PY) -m twist_lib.book build --profile $(if $(filter command line,$(origin PROFILE)),$(PROFILE),smoke)

run-notebooks:  ## execute the book's notebooks with papermill into runs/notebooks/<profile>_<date>
	$(PY) -m twist_lib.book run --profile $(PROFILE) -p init_checkpoint baseline

bench:  ## benchmark suite (bench/run.py): one table + runs/bench/<date>.csv; QUICK=1 for --quick
	OMP_NUM_THREADS=1 $(PY) bench/run.py --profile $(PROFILE) $(if $(QUICK),--quick)

clean:  ## remove build output (keeps data/, runs/ and the .venv)
	rm -rf _build .pytest_cache
