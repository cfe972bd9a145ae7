# TWIST book: set-up, tests, data, training and the book. `make help` lists the targets.
PYTHON ?= python3
PROFILE ?= cpu
export PYTHONUNBUFFERED=1

.PHONY: help setup minkowski test test-fast data train twist main book run-notebooks bench clean

help:
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

setup:  ## install torch (CPU, pinned) if missing, the requirements, twist_lib (editable), the kernel
	PYTHON=$(PYTHON) bash tools/setup.sh

minkowski:  ## build MinkowskiEngine 0.5.4 CPU-only from its sdist and prove it with a convolution
	PYTHON=$(PYTHON) bash tools/build_minkowski.sh

test: setup  ## the test suite (what .ci/run runs): package tests, the notebooks under nbval, the book build
	bash tools/install_chromium.sh
	$(PYTHON) -m pytest -q -rs tests
	OMP_NUM_THREADS=1 TWIST_PROFILE=smoke $(PYTHON) -m pytest -q -rs --nbval-lax --nbval-current-env book/

test-fast:  ## the test suite without set-up and without slow tests
	$(PYTHON) -m pytest -q -rs -m "not slow" tests

data:  ## generate the PROFILE's synthetic benchmark (scenes and label splits) if missing
	$(PYTHON) -m twist_lib data --config configs/baseline_synthetic.yaml --profile $(PROFILE)

train:  ## train the Sup-only baseline on the synthetic benchmark (PROFILE=smoke|cpu|gpu)
	$(PYTHON) -m twist_lib train --config configs/baseline_synthetic.yaml --profile $(PROFILE) --resume-if-exists

twist:  ## TWIST: round 0 + self-training rounds on the synthetic benchmark (PROFILE=smoke|cpu|gpu), resumable
	$(PYTHON) -m twist_lib twist --config configs/twist_synthetic.yaml --profile $(PROFILE) --resume-if-exists

main: setup data train run-notebooks  ## the main job: benchmark, baseline, and the book's notebooks end to end (PROFILE=cpu)

book:  ## build the HTML book with warnings as errors (notebooks execute at PROFILE=smoke unless given)
	$(PYTHON) -m twist_lib.book build --profile $(if $(filter command line,$(origin PROFILE)),$(PROFILE),smoke)

run-notebooks:  ## execute the book's notebooks with papermill into runs/notebooks/<profile>_<date>
	$(PYTHON) -m twist_lib.book run --profile $(PROFILE)

bench:  ## benchmark suite (bench/run.py): one table + runs/bench/<date>.csv; QUICK=1 for --quick
	OMP_NUM_THREADS=1 $(PYTHON) bench/run.py --profile $(PROFILE) $(if $(QUICK),--quick)

clean:  ## remove build output (keeps data/ and runs/)
	rm -rf _build .pytest_cache
