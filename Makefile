# Every target bootstraps its own virtual environment from a clean clone: only python3 (>= 3.11)
# is required on the machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test check fmt bench chaos migrate clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "tradectl needs Python >= 3.11")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

# `make run VENUE=kalshi`: the fair_value example on the built-in Kalshi-protocol simulator, whose
# market settles two minutes after the start (TRADECTL_* settings in the environment win)
ifeq ($(VENUE),kalshi)
run: export TRADECTL_VENUE ?= kalshi_simulator
run: export TRADECTL_STRATEGIES_FILE ?= strategies/kalshi.toml
run: export TRADECTL_KALSHI_SETTLE_AFTER_S ?= 120
endif
ifneq ($(filter-out kalshi,$(VENUE)),)
ifneq ($(filter run,$(MAKECMDGOALS)),)
$(error VENUE=$(VENUE): make run knows VENUE=kalshi; set TRADECTL_VENUE for the others)
endif
endif

run: $(STAMP)
	$(BIN)/tradectl run

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

check: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy

fmt: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)
	$(BIN)/python bench/execution.py

migrate: $(STAMP)
	$(BIN)/tradectl migrate

clean:
	rm -rf $(VENV) .data .pytest_cache .mypy_cache .ruff_cache
