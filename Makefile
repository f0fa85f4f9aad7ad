# The two commands of the README: `make run` and `make test`.
# Both create .venv and install the package (with its C extension) first.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: run test lint typecheck pytest sanitize soak clean bench-docs system-deps

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

pytest: $(INSTALLED) system-deps
	$(BIN)/python -m pytest

# The Sun RPC interop tests build C peers with rpcgen and libtirpc and run the real
# rpcbind; the two-host test makes namespaces and links with ip and tc, and drops
# packets with nftables where the kernel has no netem (Debian packages; installed
# here with apt-get when missing and root).
RPC_PACKAGES_MISSING = $(strip \
	$(if $(wildcard /usr/sbin/rpcbind /sbin/rpcbind),,rpcbind) \
	$(if $(shell command -v rpcgen),,rpcsvc-proto) \
	$(if $(wildcard /usr/include/tirpc/rpc/rpc.h),,libtirpc-dev) \
	$(if $(wildcard /usr/sbin/tc /sbin/tc),,iproute2) \
	$(if $(wildcard /usr/sbin/nft /sbin/nft),,nftables))
system-deps:
ifneq ($(RPC_PACKAGES_MISSING),)
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing $(RPC_PACKAGES_MISSING) (apt-get)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(RPC_PACKAGES_MISSING); \
	else \
		echo "missing $(RPC_PACKAGES_MISSING): run as root, or: sudo apt-get install $(RPC_PACKAGES_MISSING)" >&2; \
		exit 1; \
	fi
endif

# The C-heavy tests again, on the C extension built with AddressSanitizer and
# UndefinedBehaviorSanitizer in build/sanitize (the normal build is untouched);
# each process's reports go to build/sanitize/reports, and any fails the run.
# Add a test file here when it exercises C code (tools/sanitize.py explains).
SANITIZE_TESTS ?= tests/test_ring.py tests/test_ring_corruption.py tests/test_ring_fuzz.py tests/test_ring_ready.py \
	tests/test_shared_sync.py tests/test_posix_sem.py tests/test_sysv_sem.py \
	tests/test_posix_mq.py tests/test_sysv_mq.py tests/test_signals.py tests/test_topic.py \
	tests/test_fuzz_channels.py tests/test_thread_lock.py
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
	$(BIN)/unixipc bench --doc docs/benchmarks.md --plot docs/benchmarks.png --json-file docs/benchmarks.json

# Reinstall when the build description or the C sources change.
$(INSTALLED): pyproject.toml $(wildcard src/native/*.c src/native/*.h)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	touch $@

clean:
	rm -rf build $(VENV) src/*.egg-info src/unixipc/*.so .pytest_cache .mypy_cache .ruff_cache
