# The two commands of the README: `make run` and `make test`.
# Both create .venv and install the package (with its C extension) first.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: run test lint typecheck pytest sanitize soak clean bench-docs

run: $(INSTALLED)
	$(BIN)/unixipc demo
	$(BIN)/unixipc bench --quick --plot bench.png

test: lint typecheck pytest sanitize

lint: $(INSTALLED)
	$(BIN)/ruff check src tests examples tools benchmarks
	$(BIN)/ruff format --check src tests examples tools benchmarks

typecheck: $(INSTALLED)
	$(BIN)/mypy --strict src
	$(BIN)/python -m mypy.stubtest unixipc._native

pytest: $(INSTALLED)
	$(BIN)/python -m pytest

# The C-heavy tests again, on the C extension built with AddressSanitizer and
# UndefinedBehaviorSanitizer in build/sanitize (the normal build is untouched);
# each process's reports go to build/sanitize/reports, and any fails the run.
# Add a test file here when it exercises C code (tools/sanitize.py explains).
SANITIZE_TESTS ?= tests/test_ring.py tests/test_ring_corruption.py tests/test_ring_fuzz.py \
	tests/test_shared_sync.py tests/test_posix_sem.py tests/test_sysv_sem.py \
	tests/test_posix_mq.py tests/test_sysv_mq.py tests/test_signals.py
sanitize: $(INSTALLED)
	$(BIN)/python tools/sanitize.py run -- -q $(SANITIZE_TESTS)

# Not part of `make test`: rings and channels under load for SOAK_SECONDS (an
# hour by default), every message counted (benchmarks/soak.py); SOAK_RATE caps
# each sender's messages per second (0: none) on a shared machine.
SOAK_SECONDS ?= 3600
SOAK_RATE ?= 0
soak: $(INSTALLED)
	$(BIN)/python benchmarks/soak.py --seconds $(SOAK_SECONDS) --rate $(SOAK_RATE)

# Regenerate docs/benchmarks.md (report), docs/benchmarks.png and .json: a full run, about 10 minutes.
bench-docs: $(INSTALLED)
	$(BIN)/unixipc bench --doc docs/benchmarks.md --plot docs/benchmarks.png --json docs/benchmarks.json

# Reinstall when the build description or the C sources change.
$(INSTALLED): pyproject.toml $(wildcard src/native/*.c src/native/*.h)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	touch $@

clean:
	rm -rf build $(VENV) src/*.egg-info src/unixipc/*.so .pytest_cache .mypy_cache .ruff_cache
