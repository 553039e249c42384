# Conveniences over the `reid` CLI. Every target creates .venv when it is missing.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DIR ?= demo

.PHONY: install demo ui test test-fast lint bench bench-quick clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

# Synthetic data -> untrained baseline -> the `demo` study (2 workers, SQLite for Optuna and
# MLflow) -> its best trial promoted to @champion -> a summary. A rerun starts a fresh study.
demo: $(STAMP)
	$(BIN)/reid data synth $(DEMO_DIR)/data --seed 0 --overwrite
	$(BIN)/reid data check $(DEMO_DIR)/data
	$(BIN)/reid eval --preset cpu-tiny --data $(DEMO_DIR)/data --out $(DEMO_DIR)/baseline --no-track
	rm -rf $(DEMO_DIR)/studies.db $(DEMO_DIR)/runs
	$(BIN)/reid study run demo --data $(DEMO_DIR)/data --workers 2 \
	  --storage sqlite:///$(DEMO_DIR)/studies.db --checkpoints $(DEMO_DIR)/runs
	-$(BIN)/reid study best demo --storage sqlite:///$(DEMO_DIR)/studies.db --promote \
	  --baseline $(DEMO_DIR)/baseline/metrics.json  # exits 1 (and says why) when @champion wins
	@echo ""
	@echo "MLflow UI (runs, the study's parent run and its trials): make ui   (or: $(BIN)/reid ui)"
	@echo "Optuna dashboard: $(BIN)/reid study dashboard --storage sqlite:///$(DEMO_DIR)/studies.db"

ui: $(STAMP)
	$(BIN)/reid ui

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow and not integration"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy reid_core
	$(BIN)/lint-imports

# Every bench in bench/ (bench/run_all.py's registry); rewrites the table in docs/BENCHMARKS.md.
bench: $(STAMP)
	$(BIN)/python bench/run_all.py

bench-quick: $(STAMP)
	$(BIN)/python bench/run_all.py --quick

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache .ruff_cache .mypy_cache
