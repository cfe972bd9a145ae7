# TWIST book: set-up, tests, data, training and the book. `make help` lists the targets.
PYTHON ?= python3
PROFILE ?= cpu
export PYTHONUNBUFFERED=1

.PHONY: help setup minkowski test test-fast data train main book run-notebooks bench clean

help:
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

setup:  ## install torch (CPU, pinned) if missing, the requirements, twist_lib (editable), the kernel
	PYTHON=$(PYTHON) bash tools/setup.sh

minkowski:  ## build MinkowskiEngine 0.5.4 CPU-only from its sdist and prove it with a convolution
	PYTHON=$(PYTHON) bash tools/build_minkowski.sh

test: setup  ## the test suite (what .ci/run runs)
	$(PYTHON) -m pytest -q -rs tests

test-fast:  ## the test suite without set-up and without slow tests
	$(PYTHON) -m pytest -q -rs -m "not slow" tests

data:  ## generate the synthetic benchmark (CPU size) and its label splits
	$(PYTHON) data_scripts/make_synthetic.py --out data/synthetic_cpu --scenes 120 --size cpu --seed 0
	$(PYTHON) data_scripts/make_splits.py --data data/synthetic_cpu --ratios 1 5 10 20 --seed 0

train:  ## train the Sup-only baseline on the synthetic benchmark (PROFILE=smoke|cpu|gpu)
	$(PYTHON) -m twist_lib train --config configs/baseline_synthetic.yaml --profile $(PROFILE) --resume-if-exists

main: setup data train  ## the main job: set up, generate the benchmark, train and evaluate the baseline

bench:  ## benchmark scripts: synthetic generation, sparse backends, clustering
	$(PYTHON) bench/bench_synthetic.py
	$(PYTHON) bench/bench_sparse.py
	$(PYTHON) bench/bench_clustering.py

clean:  ## remove build output (keeps data/ and runs/)
	rm -rf _build .pytest_cache
