# Two entry points for a fresh machine: `make demo` (main job) and `make test` (the test suite).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test test-slow test-all lint docs docs-serve bench bench-search bench-driver bench-freeze-thaw bench-nas bench-ray clean

$(BIN)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -c constraints.txt "torch==2.13.0"
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev,ray,postgres,docs]"
	touch $@

demo: $(BIN)/.installed
	$(BIN)/tunelab demo

test: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

test-slow: $(BIN)/.installed
	$(BIN)/python -m pytest -q -m slow

test-all: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -m "slow or not slow"

# The documentation site: `docs` builds it into site/ (strict: a broken link or reference fails),
# `docs-serve` serves it with live reload on http://127.0.0.1:8000.
docs: $(BIN)/.installed
	NO_MKDOCS_2_WARNING=1 $(BIN)/python -m mkdocs build --strict

docs-serve: $(BIN)/.installed
	NO_MKDOCS_2_WARNING=1 $(BIN)/python -m mkdocs serve --dev-addr 127.0.0.1:8000

lint: $(BIN)/.installed
	$(BIN)/ruff check .

bench: $(BIN)/.installed
	$(BIN)/python benchmarks/trainer_speed.py

bench-search: $(BIN)/.installed
	$(BIN)/python benchmarks/search_quality.py

bench-driver: $(BIN)/.installed
	$(BIN)/python benchmarks/driver_overhead.py

bench-freeze-thaw: $(BIN)/.installed
	$(BIN)/python benchmarks/freeze_thaw.py --seeds 5 --epochs 600

bench-nas: $(BIN)/.installed
	$(BIN)/python benchmarks/nas.py --seeds 5 --trials 40 --epochs 4 --jobs 2

bench-ray: $(BIN)/.installed
	$(BIN)/python benchmarks/ray_executor.py --trials 20 --epochs 5 --workers 2

clean:
	rm -rf $(VENV) build site *.egg-info
