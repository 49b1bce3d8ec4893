# dfocus: `make run` (the whole graph on the simulated array) and `make test` (the whole suite).
# Both set up .venv by themselves; re-running is fast when nothing changed.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
ONCE ?=
PYTEST_ARGS ?=

.PHONY: setup run test test-loaded lint bench soak train clean

setup:
	@scripts/setup_env.sh

run: setup
	$(BIN)/dfocus run $(if $(ONCE),--once)

test: setup lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The same suite with a CPU hog on every core (not part of `make test`; twice as long or more).
test-loaded: setup lint
	scripts/with_cpu_hog.sh $(BIN)/python -m pytest $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check src test
	$(BIN)/mypy

bench: setup
	$(BIN)/dfocus bench

# 30 minutes of capture -> refocus cycles on the whole graph: bench/soak/soak.md and soak_memory.png.
soak: setup
	$(BIN)/dfocus soak --duration 1800 --out bench/soak

train: setup
	$(BIN)/dfocus train

clean:
	rm -rf out build install log src/dfocus_interfaces/build src/tf2_msgs/build
