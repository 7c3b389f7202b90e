# dermascreen: `make all` sets up and runs the experiment; `make test` sets up and runs the tests.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# No usage data leaves the machine.
export KEDRO_DISABLE_TELEMETRY := 1
export DVC_NO_ANALYTICS := 1
# The experiment's image size (conf/base/globals.yml, as dvc.yaml reads it).
IMAGE_SIZE := $(shell sed -n 's/^image_size: *//p' conf/base/globals.yml)
# A local DermaMNIST copy when this checkout sits beside one (offline machines) and the experiment
# reads its size, 28x28; else the official file of IMAGE_SIZE is downloaded.
DERMAMNIST_NPZ ?= $(if $(filter 28,$(IMAGE_SIZE)),$(wildcard $(abspath ../shared/data/dermamnist_28_jpeg75.npz)))
ifneq ($(DERMAMNIST_NPZ),)
export DERMAMNIST_NPZ
endif
# The out of dvc.yaml's raw_data stage.
RAW_NPZ := data/01_raw/dermamnist_$(IMAGE_SIZE).npz

.PHONY: all setup lock test grid repro viz bench gpu-check clean-venv

all: repro

setup: $(STAMP)

# requirements.lock: every package, pinned with its hashes (Linux x86-64, Python 3.11, PyPI's
# torch as README says); pip refuses a file whose hash differs.
$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --require-hashes -r requirements.lock
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

# Regenerate requirements.lock from requirements.txt (the direct pins) with uv, in its own venv
# ($(UV_VENV), git-ignored). Versions already locked are kept where they still fit;
# `make lock UPGRADE=1` takes the newest the pins allow. Then `make setup` installs the new lock.
UV_VENV ?= .uv
UV_VERSION := 0.13.9
lock:
	test -x $(UV_VENV)/bin/uv || { $(PYTHON) -m venv $(UV_VENV) && $(UV_VENV)/bin/pip install --quiet uv==$(UV_VERSION); }
	$(UV_VENV)/bin/uv pip compile requirements.txt --generate-hashes --python-version 3.11 \
		--python-platform x86_64-unknown-linux-gnu --custom-compile-command "make lock" \
		$(if $(UPGRADE),--upgrade) -o requirements.lock

# Tests never touch a model hub. One worker per core and one more (pytest-xdist): the tests that
# start real kedro/dvc processes spend part of their time waiting on them, and the extra worker keeps
# the cores busy meanwhile (2 cores: 10 min 35 s against 12 min 16 s with one per core,
# docs/results.md). A test file's tests on one worker (module fixtures are built once); every test
# runs torch on one thread (tests/conftest.py).
# (nproc without OMP_NUM_THREADS, which it would report instead of the cores)
TEST_WORKERS ?= $(shell echo $$(( $$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc) + 1 )))
test: setup
	HF_HUB_OFFLINE=1 $(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile

# params.yaml's grids (phase<n>_runs: one dvc.yaml stage per run) from the configuration of its
# profile, or of PROFILE=...: after editing a grid's configuration in conf/, before `dvc repro`.
grid: setup
	$(BIN)/python -m dermascreen.grid $${PROFILE:+--env $$PROFILE}

# The whole experiment through DVC: profile `base` with a CUDA GPU, `quick` without (README).
# PROFILE=... overrides; a profile other than params.yaml's runs as a DVC experiment.
# First the preflight check lists every problem at once and stops the run in seconds when it
# cannot succeed (docs/training.md), before anything is downloaded or trained (missing ImageNet
# weights pass while the model hub can be reached; offline, it says how to provide them); then the
# weights are fetched where a hub can be reached, params.yaml gets the profile's grids (one DVC
# stage per phase1/phase2 run: `make grid`), and the expected training time of each stage is
# printed (python -m dermascreen.estimate: a few real steps of every job, times its size).
# DVC cannot see DERMAMNIST_NPZ: a raw copy that differs from it is dropped first, so DVC reruns
# raw_data (and what follows) with the new file (docs/data.md). At the end: the quick targets, the measured
# values and the published anchors (python -m dermascreen.targets, docs/results.md).
# FORCE=1: every stage runs (dvc repro -f), outputs and run cache notwithstanding: a timing from scratch
# (delete data/06_models/*_state first, or finished runs return their saved results).
repro: setup
	@profile=$${PROFILE:-$$($(BIN)/python -m dermascreen.profile)}; \
	current=$$(sed -n 's/^profile: *//p' params.yaml); \
	echo "dermascreen: running profile '$$profile' (params.yaml has '$$current')"; \
	start=$$(date +%s); \
	$(BIN)/python -m dermascreen.data.acquire $(RAW_NPZ) --drop-replaced || exit 1; \
	export PATH=$(abspath $(BIN)):$$PATH; \
	python -m dermascreen.preflight --env $$profile --weights-from-hub || exit 1; \
	dermascreen-weights fetch --profile $$profile || exit 1; \
	python -m dermascreen.grid --env $$profile || exit 1; \
	python -m dermascreen.estimate --env $$profile || echo "dermascreen: no time estimate (see the error above)"; \
	if [ "$$profile" = "$$current" ]; then dvc repro $(if $(FORCE),-f) || exit 1; else dvc exp run $(if $(FORCE),-f) --set-param profile=$$profile || exit 1; fi; \
	python -m dermascreen.targets --wall-minutes $$(awk "BEGIN { print ($$(date +%s) - $$start) / 60 }")

# kedro-viz without hooks reads KEDRO_ENV for the grids it draws (docs/kedro_viz.md).
viz: setup
	KEDRO_ENV=$${PROFILE:-$$($(BIN)/python -m dermascreen.profile)} $(BIN)/kedro viz run

bench: setup
	for b in benchmarks/bench_*.py; do $(BIN)/python $$b || exit 1; done

# On a CUDA machine, before `base`: the cuda tests, then one timed epoch per architecture
# (benchmarks/gpu_check.py, under 8 minutes; writes benchmarks/results/gpu_check.json).
gpu-check: setup
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/gpu_check.py

clean-venv:
	rm -rf $(VENV)
