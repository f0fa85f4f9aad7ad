# The two commands of the README: `make run` and `make test`.
# Both create .venv and install the package (with its C extension) first.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: run test lint typecheck pytest clean bench-docs

run: $(INSTALLED)
	$(BIN)/unixipc demo
	$(BIN)/unixipc bench --quick --plot bench.png

test: lint typecheck pytest

lint: $(INSTALLED)
	$(BIN)/ruff check src tests examples
	$(BIN)/ruff format --check src tests examples

typecheck: $(INSTALLED)
	$(BIN)/mypy --strict src
	$(BIN)/python -m mypy.stubtest unixipc._native

pytest: $(INSTALLED)
	$(BIN)/python -m pytest

# Regenerate docs/benchmarks.md (report), docs/benchmarks.png and .json: a full run, about 10 minutes.
bench-docs: $(INSTALLED)
	$(BIN)/unixipc bench --doc docs/benchmarks.md --plot docs/benchmarks.png --json-file docs/benchmarks.json

# Reinstall when the build description or the C sources change.
$(INSTALLED): pyproject.toml $(wildcard src/native/*.c src/native/*.h)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	touch $@

clean:
	rm -rf build $(VENV) src/*.egg-info src/unixipc/*.so .pytest_cache .mypy_cache .ruff_cache
