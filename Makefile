# Melody: `make setup` installs everything, `make test` runs the tests, `make demo` runs
# the main job end to end on embedded defaults. See README.md.
SHELL := /bin/bash
PY := .venv/bin/python
export MELODY_DATA_DIR ?= $(abspath ../shared/data)
export TF_USE_LEGACY_KERAS := 1
export TF_CPP_MIN_LOG_LEVEL ?= 2
PYTEST_ARGS ?=
# pytest-xdist workers; a test module is one unit, so its module-scoped fixtures are
# built once. 0 runs in one process.
TEST_WORKERS ?= 2
PYTEST_XDIST := $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder)

.PHONY: setup test test-fast lint-imports arch-report demo bench bench-data bench-ranking bench-serving bench-intent \
	bench-simulation bench-pipeline bench-nearline bazel-test lock clean help

help:
	@echo "make setup       create .venv with the locked dependencies (+ glibc compat layer if needed)"
	@echo "make test        run all tests (unit + slow end-to-end) on TEST_WORKERS=2 workers"
	@echo "make test-fast   run the fast tests only"
	@echo "make lint-imports check the layer order (.importlinter)"
	@echo "make demo        generate simulated data and run the main job end to end"
	@echo "make bench       run the benchmarks; results in bench/results/*.json"
	@echo "make bazel-test  bazel test //... (installs Debian's bazel-bootstrap if missing)"

setup:
	@bash scripts/setup_env.sh

test: lint-imports
	$(PY) -m pytest -q $(PYTEST_XDIST) $(PYTEST_ARGS)

test-fast: lint-imports
	$(PY) -m pytest -q -m "not slow" $(PYTEST_XDIST) $(PYTEST_ARGS)

# The layer order and the test-support rule of .importlinter (docs/architecture.md).
lint-imports:
	.venv/bin/lint-imports --no-cache

# Largest modules and classes, import cycles and back-arrows, for reviewing a change.
arch-report:
	$(PY) scripts/architecture_report.py

demo:
	@bash scripts/demo.sh

bench:
	$(PY) -m bench.run all

bench-data:
	$(PY) -m bench.run data

bench-ranking:
	$(PY) -m bench.run ranking

bench-serving:
	$(PY) -m bench.run serving

bench-intent:
	$(PY) -m bench.run intent

bench-simulation:
	$(PY) -m bench.run simulation

bench-pipeline:
	$(PY) -m bench.run pipeline

bench-nearline:
	$(PY) -m bench.run nearline

bazel-test:
	@bash scripts/bazel_test.sh

lock:
	@bash scripts/lock.sh

clean:
	rm -rf build/ *.egg-info .pytest_cache bazel-*
