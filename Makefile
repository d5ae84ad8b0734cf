# mural_jax: `make train` and `make test` are all a fresh machine needs (python3 only).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

# `make train` runs with TRAIN_CONFIG: CONFIG when given; else experiments/configs/ENV.json
# when ENV names one (the paper's settings for that task); else the quickstart when no ENV is
# given (`make train`, `make train METHOD=vice STEPS=48000`); else the library defaults for
# ENV. METHOD, STEPS, SEED and ARGS override the config.
# ENV is also the POSIX shell's startup-file variable (set in some images), so only a value
# given on make's command line (`make train ENV=ant_maze`) names a task.
ifneq ($(origin ENV),command line)
override ENV :=
endif
ifneq ($(CONFIG),)
TRAIN_CONFIG := $(CONFIG)
else ifeq ($(ENV),)
TRAIN_CONFIG := quickstart
else ifneq ($(wildcard experiments/configs/$(ENV).json),)
TRAIN_CONFIG := $(ENV)
endif
ENV    ?=
METHOD ?=
STEPS  ?=
SEED   ?= 0
OUT    ?=
CONFIG ?=
ARGS   ?=
SEEDS  ?= 3
METHODS ?= mural vice sparse dense

.PHONY: venv train reproduce test lint format bench clean

venv: $(STAMP)

# Rebuilt only when requirements.txt or pyproject.toml change.
$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

train: $(STAMP)
	$(PY) -m mural_jax.train $(if $(TRAIN_CONFIG),--config $(TRAIN_CONFIG)) $(if $(ENV),--env $(ENV)) \
		$(if $(METHOD),--method $(METHOD)) --seed $(SEED) $(if $(STEPS),--steps $(STEPS)) \
		$(if $(OUT),--out $(OUT)) $(ARGS)

# make reproduce [CONFIG=zigzag_maze_cpu | ENV=NAME] SEEDS=3 METHODS="mural vice sparse" [STEPS=N]
REPRO_CONFIG = $(or $(CONFIG),$(ENV),zigzag_maze_cpu)
reproduce: $(STAMP)
	$(PY) -m experiments.reproduce --config $(REPRO_CONFIG) --seeds $(SEEDS) \
		--methods $(METHODS) \
		--out $(or $(OUT),runs/reproduce-$(REPRO_CONFIG)-$(shell date +%Y%m%d-%H%M%S)) \
		$(if $(STEPS),--steps $(STEPS))

lint: $(STAMP)
	$(VENV)/bin/ruff check mural_jax tests experiments benchmarks
	$(VENV)/bin/ruff format --check mural_jax tests experiments benchmarks

format: $(STAMP)
	$(VENV)/bin/ruff format mural_jax tests experiments benchmarks
	$(VENV)/bin/ruff check --fix mural_jax tests experiments benchmarks

# TEST_WORKERS pytest-xdist processes, each running whole files (module fixtures built once).
TEST_WORKERS ?= 2
test: lint
	JAX_PLATFORMS=cpu $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --durations=15 tests

bench: $(STAMP)
	$(PY) -m benchmarks.run $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
