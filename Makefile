# mural_jax: `make train` and `make test` are all a fresh machine needs (python3 only).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

# `make train` with no task arguments runs the quickstart (MURAL on zigzag_maze, CPU-sized).
# `make train ENV=ant_maze` trains with that task's paper settings (experiments/configs/ENV.json)
# when the file exists, else with the library defaults; METHOD, STEPS, ARGS override either.
ifeq ($(origin ENV)$(origin METHOD)$(origin STEPS)$(origin CONFIG),undefinedundefinedundefinedundefined)
CONFIG := quickstart
endif
ifeq ($(origin CONFIG),undefined)
ifneq ($(ENV),)
ifneq ($(wildcard experiments/configs/$(ENV).json),)
CONFIG := $(ENV)
endif
endif
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
	$(PY) -m mural_jax.train $(if $(CONFIG),--config $(CONFIG)) $(if $(ENV),--env $(ENV)) \
		$(if $(METHOD),--method $(METHOD)) --seed $(SEED) $(if $(STEPS),--steps $(STEPS)) \
		$(if $(OUT),--out $(OUT)) $(ARGS)

# make reproduce ENV=zigzag_maze SEEDS=3 METHODS="mural vice sparse" [CONFIG=zigzag_maze_cpu]
reproduce: $(STAMP)
	$(PY) -m experiments.reproduce --config $(or $(CONFIG),$(ENV),zigzag_maze_cpu) --seeds $(SEEDS) \
		--methods $(METHODS) \
		--out $(or $(OUT),runs/reproduce-$(or $(CONFIG),$(ENV))-$(shell date +%Y%m%d-%H%M%S)) \
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
